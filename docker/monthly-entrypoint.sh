#!/usr/bin/env bash
# The monthly job's container entrypoint: the command retrain.yml runs (`python -m stages.monthly`), configured
# from the environment, in a git checkout of the repository (cloned here when the image runs on its own).
# Then the outcome goes to the Pushgateway (PUSHGATEWAY_URL) and a failure is notified (SLACK_WEBHOOK_URL,
# GITHUB_TOKEN + GITHUB_REPOSITORY). Exit status: the monthly script's. docs/operations.md lists every variable.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: monthly-entrypoint.sh [--dry-run | --help]
  REPROLAB_WORKDIR   git checkout to run in (default /work/repo); cloned from REPROLAB_GIT_URL when absent
  REPROLAB_GIT_URL   https URL of the repository; REPROLAB_GIT_TOKEN (secret) authenticates the clone
  REPROLAB_GIT_REF   branch to check out (default main)
  REPROLAB_PROFILE   embedded (default) | production
  REPROLAB_MONTH     YYYY-MM (default: this month, UTC)
  REPROLAB_BASE      revision the report compares with (default: the monthly script's)
  REPROLAB_NO_PUSH   1: do not dvc push
  REPROLAB_OUT       where the PR files go (default .monthly)
  PUSHGATEWAY_URL    push the outcome there (reprolab.monitoring)
  AWS credentials: the task role (ECS/Batch) or AWS_* variables; never baked into the image.
Runs `dvc pull` first (a failure is a warning: a first run builds everything).
--dry-run prints the command it would run and checks that it starts (`--help`), without running the month.
USAGE
}

dry_run=0
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "error: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
esac

python="${REPROLAB_PYTHON:-python}"
workdir="${REPROLAB_WORKDIR:-/work/repo}"
profile="${REPROLAB_PROFILE:-embedded}"
month="${REPROLAB_MONTH:-$(date -u +%Y-%m)}"
out="${REPROLAB_OUT:-.monthly}"

if [[ ! "$month" =~ ^[0-9]{4}-(0[1-9]|1[0-2])$ ]]; then
  echo "error: REPROLAB_MONTH '$month' is not YYYY-MM" >&2; exit 64
fi

if ! git -C "$workdir" rev-parse --git-dir >/dev/null 2>&1; then
  if [[ -z "${REPROLAB_GIT_URL:-}" ]]; then
    echo "error: $workdir is not a git checkout and REPROLAB_GIT_URL is not set" >&2; exit 64
  fi
  # The token travels in git's environment config, never on a command line (ps) or in the URL (logs).
  if [[ -n "${REPROLAB_GIT_TOKEN:-}" ]]; then
    export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader
    GIT_CONFIG_VALUE_0="Authorization: Basic $(printf 'x-access-token:%s' "$REPROLAB_GIT_TOKEN" | base64 -w0)"
    export GIT_CONFIG_VALUE_0
  fi
  git clone --quiet --branch "${REPROLAB_GIT_REF:-main}" "$REPROLAB_GIT_URL" "$workdir"
fi
cd "$workdir"

cmd=("$python" -m stages.monthly --profile "$profile" --month "$month" --out "$out")
if [[ -n "${REPROLAB_BASE:-}" ]]; then cmd+=(--base "$REPROLAB_BASE"); fi
if [[ "${REPROLAB_NO_PUSH:-0}" == "1" ]]; then cmd+=(--no-push); fi

if [[ "$dry_run" == "1" ]]; then
  echo "would run in $workdir: ${cmd[*]}"
  for secret in MISTRAL_API_KEY SLACK_WEBHOOK_URL GITHUB_TOKEN PUSHGATEWAY_URL AWS_ACCESS_KEY_ID; do
    if [[ -n "${!secret:-}" ]]; then echo "  $secret: set"; else echo "  $secret: not set"; fi
  done
  "$python" -m stages.monthly --help >/dev/null
  echo "stages.monthly starts"
  exit 0
fi

mkdir -p "$out"
# As retrain.yml does: last month's outputs from the remote, so unchanged stages stay cached. An empty remote
# (a first run) is not an error: the month then builds everything.
"$python" -m dvc pull --quiet || echo "warning: dvc pull failed (empty remote on a first run?); rebuilding" >&2
set +e
"${cmd[@]}"
rc=$?
set -e
echo "monthly job exit status: $rc"
"$python" -m reprolab.monitoring push-monthly --out "$out" --exit-code "$rc" --profile "$profile" \
  || echo "warning: the outcome did not reach the Pushgateway (see above); alerts will say the run was skipped" >&2
if [[ "$rc" -ne 0 ]]; then
  "$python" -m stages.monthly --notify-failure --out "$out" || echo "warning: the failure notification failed" >&2
fi
exit "$rc"

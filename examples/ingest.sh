#!/usr/bin/env bash
# Ingest the sample document (multipart upload), twice: the second call reports "unchanged".
# INGEST_URL: http://127.0.0.1:8000 for `make serve`, http://127.0.0.1:8001 under docker compose.
# WRITE_API_KEY: one of the service's WRITE_API_KEYS; default the dev key `make serve` wrote to .serve-write-key.
# READ_API_KEY: needed for the GET calls only when the service sets READ_API_KEYS (a write key also reads).
set -euo pipefail
INGEST_URL=${INGEST_URL:-http://127.0.0.1:8000}
DOC=${1:-$(dirname "$0")/../samples/docs/como-funciona-hotmart.txt}
KEY_FILE=${SERVE_KEY_FILE:-$(dirname "$0")/../.serve-write-key}
if [ -z "${WRITE_API_KEY:-}" ] && [ -s "$KEY_FILE" ]; then WRITE_API_KEY=$(cat "$KEY_FILE"); fi
: "${WRITE_API_KEY:?set WRITE_API_KEY (one of the WRITE_API_KEYS of the service), or run make serve once for a dev key}"
# The key travels in a curl config on stdin, not on the command line (where `ps` would show it).
write() { printf 'header = "Authorization: Bearer %s"\n' "$WRITE_API_KEY" | curl -fsS -K - "$@"; }
read_() { printf 'header = "Authorization: Bearer %s"\n' "${READ_API_KEY:-$WRITE_API_KEY}" | curl -fsS -K - "$@"; }
for attempt in 1 2; do
  write -X POST "$INGEST_URL/documents" \
    -F "file=@${DOC};type=text/plain" \
    -F 'metadata={"source": "hotmart blog", "language": "pt"}'
  echo
done
# JSON body instead of a file:
write -X POST "$INGEST_URL/documents" -H 'content-type: application/json' \
  -d '{"id": "docs/nota.txt", "text": "A Hotmart foi fundada em 2011.", "metadata": {"source": "example"}}'
echo
read_ "$INGEST_URL/documents"; echo
read_ "$INGEST_URL/documents/docs/como-funciona-hotmart.txt"; echo
write -X DELETE "$INGEST_URL/documents/docs/nota.txt"; echo

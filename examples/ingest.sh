#!/usr/bin/env bash
# Ingest the sample document (multipart upload), twice: the second call reports "unchanged".
# INGEST_URL: http://127.0.0.1:8000 for `make serve`, http://127.0.0.1:8001 under docker compose.
set -euo pipefail
INGEST_URL=${INGEST_URL:-http://127.0.0.1:8000}
DOC=${1:-$(dirname "$0")/../samples/docs/como-funciona-hotmart.txt}
for attempt in 1 2; do
  curl -fsS -X POST "$INGEST_URL/documents" \
    -F "file=@${DOC};type=text/plain" \
    -F 'metadata={"source": "hotmart blog", "language": "pt"}'
  echo
done
# JSON body instead of a file:
curl -fsS -X POST "$INGEST_URL/documents" -H 'content-type: application/json' \
  -d '{"id": "docs/nota.txt", "text": "A Hotmart foi fundada em 2011.", "metadata": {"source": "example"}}'
echo
curl -fsS "$INGEST_URL/documents"; echo
curl -fsS "$INGEST_URL/documents/docs/como-funciona-hotmart.txt"; echo
curl -fsS -X DELETE "$INGEST_URL/documents/docs/nota.txt"; echo

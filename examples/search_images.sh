#!/usr/bin/env bash
# Text -> images, and image -> similar images (needs the index stage's image collection and models/clip).
set -euo pipefail
# READ_API_KEY: needed only when the service sets READ_API_KEYS (sent in a curl config on stdin, not in argv).
QUERY_URL=${QUERY_URL:-http://127.0.0.1:8000}
read_() { printf '%s' "${READ_API_KEY:+header = \"Authorization: Bearer $READ_API_KEY\"}" | curl -fsS -K - "$@"; }
read_ -X POST "$QUERY_URL/search/images" -H 'content-type: application/json' \
  -d '{"text": "an old man with a long gray beard", "top_k": 3}'; echo
read_ -X POST "$QUERY_URL/search/similar" -F "file=@$(dirname "$0")/../samples/art/images/0.jpg" -F top_k=3; echo

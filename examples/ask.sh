#!/usr/bin/env bash
# Ask the 15 sample questions (samples/qa/perguntas.txt) and print each answer with its cited passages.
# QUERY_URL: http://127.0.0.1:8000 for `make serve`, http://127.0.0.1:8002 under docker compose.
set -euo pipefail
# READ_API_KEY: needed only when the service sets READ_API_KEYS (sent in a curl config on stdin, not in argv).
QUERY_URL=${QUERY_URL:-http://127.0.0.1:8000}
QUESTIONS=${1:-$(dirname "$0")/../samples/qa/perguntas.txt}
grep '?$' "$QUESTIONS" | sed -E 's/^[0-9]+\. //' | while IFS= read -r q; do
  body=$(python3 -c 'import json,sys; print(json.dumps({"question": sys.argv[1], "top_k": 5}))' "$q")
  printf '%s' "${READ_API_KEY:+header = \"Authorization: Bearer $READ_API_KEY\"}" |
    curl -fsS -K - -X POST "$QUERY_URL/query" -H 'content-type: application/json' -d "$body" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("Q:", r["question"])
print("A:", r["answer"])
for p in r["passages"]:
    if p["n"] in r["cited"]:
        print("  [%d] %s score=%.4f: %s..." % (p["n"], p["document_id"], p["score"], p["text"][:160]))
print("   timings (ms):", r["timings_ms"]); print()'
done

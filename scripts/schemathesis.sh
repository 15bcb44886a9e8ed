#!/usr/bin/env bash
# Property-based API testing: schemathesis against the running service (start-dev, SQLite and the
# development IMS) and its published /openapi.json, with a valid administrator token. Fails on any
# server error, undocumented status, wrong content type or response that breaks the schema.
# Installs schemathesis into ./.venv (PyPI) when missing. Bounded: SCHEMATHESIS_SECONDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
if ! .venv/bin/schemathesis --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv .venv
  .venv/bin/pip install -q "schemathesis==$version"
fi

cargo build --locked -q --bin cc-connection
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && CCC_LISTEN="127.0.0.1:$port" RUST_LOG=warn exec "$OLDPWD/target/debug/cc-connection" start-dev \
  >"$work/out.txt" 2>"$work/err.txt") &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  grep -q '^ADMIN_TOKEN=' "$work/out.txt" 2>/dev/null && break
  sleep 0.1
done
admin=$(grep -o '^ADMIN_TOKEN=[^ ]*' "$work/out.txt" | cut -d= -f2)
[ -n "$admin" ] || { echo "start-dev printed no token" >&2; cat "$work/err.txt" >&2; exit 1; }

.venv/bin/schemathesis run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $admin" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-time "${SCHEMATHESIS_SECONDS:-60}" --workers 2 --seed 1 --warnings off

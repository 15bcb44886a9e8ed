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

. scripts/start-dev-bg.sh

.venv/bin/schemathesis run "$base/openapi.json" \
  -H "Authorization: Bearer $admin" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-time "${SCHEMATHESIS_SECONDS:-60}" --workers 2 --seed 1 --warnings off

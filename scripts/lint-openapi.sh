#!/usr/bin/env bash
# Lints the committed OpenAPI document with Redocly's recommended rules (@redocly/cli from the npm
# registry, installed into ./node_modules when missing). Errors fail; warnings are shown.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.77.0
if ! [ -x node_modules/.bin/redocly ] || [ "$(node_modules/.bin/redocly --version 2>/dev/null)" != "$version" ]; then
  npm install --silent --no-audit --no-fund --no-save "@redocly/cli@$version" >/dev/null
fi
node_modules/.bin/redocly lint --format=summary openapi/openapi.json

#!/usr/bin/env bash
# End-to-end: Swagger UI of start-dev in headless Chromium. Installs what it needs: Debian's
# chromium (apt) and playwright-core (npm, into ./node_modules). Leaves target/swagger-e2e.png.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; else sudo apt-get install -y -qq chromium >/dev/null; fi
fi
pw=1.65.1
if ! [ -f node_modules/playwright-core/package.json ] || ! grep -q "\"version\": \"$pw\"" node_modules/playwright-core/package.json; then
  npm install --silent --no-audit --no-fund --no-save "playwright-core@$pw" >/dev/null
fi

. scripts/start-dev-bg.sh
# Connect the demo tenant, as an administrator would, so the read has something to show.
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"org_id":"C0FFEE00C0FFEE00C0FFEE00@AdobeOrg"}' "$base/tenants/acme-prod/creative-cloud-connection"
mkdir -p target
node e2e/swagger.mjs "$base" "$integration" target/swagger-e2e.png
# The screenshot is a real picture of the page (a blank or failed render is a few KB).
size=$(stat -c %s target/swagger-e2e.png)
[ "$size" -gt 20000 ] || { echo "screenshot is only $size bytes" >&2; exit 1; }

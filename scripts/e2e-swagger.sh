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

cargo build --locked -q --bin cc-connection
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
root=$PWD
(cd "$work" && CCC_LISTEN="127.0.0.1:$port" RUST_LOG=warn exec "$root/target/debug/cc-connection" start-dev \
  >"$work/out.txt" 2>"$work/err.txt") &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  grep -q '^INTEGRATION_TOKEN=' "$work/out.txt" 2>/dev/null && break
  sleep 0.1
done
admin=$(grep -o '^ADMIN_TOKEN=[^ ]*' "$work/out.txt" | cut -d= -f2)
integration=$(grep -o '^INTEGRATION_TOKEN=[^ ]*' "$work/out.txt" | cut -d= -f2)
base="http://127.0.0.1:$port"
# Connect the demo tenant, as an administrator would, so the read has something to show.
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"org_id":"C0FFEE00C0FFEE00C0FFEE00@AdobeOrg"}' "$base/tenants/acme-prod/creative-cloud-connection"
mkdir -p target
node e2e/swagger.mjs "$base" "$integration" target/swagger-e2e.png
# The screenshot is a real picture of the page (a blank or failed render is a few KB).
size=$(stat -c %s target/swagger-e2e.png)
[ "$size" -gt 20000 ] || { echo "screenshot is only $size bytes" >&2; exit 1; }

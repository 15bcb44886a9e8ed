#!/usr/bin/env bash
# Real clients and a real proxy against start-dev (issue 29): a Python client (openapi-python-client)
# and a TypeScript client (openapi-typescript + openapi-fetch, type-checked with tsc --noEmit),
# generated from the committed openapi/openapi.json into a temporary folder, list, follow the change
# feed with `wait` and connect conditionally; then Debian's nginx, its own process and config with
# the default buffering and timeouts, in front of start-dev: a stream delivers a switch within a
# second, and a long poll at wait=50 answers 200, not 504.
# Installs what it needs when missing: PyPI packages into ./.venv, npm packages into
# ./.ci-tools/node, nginx with apt-get. Under CI=true a tool that cannot be installed fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

python_client=0.29.1
openapi_typescript=7.13.0
openapi_fetch=0.17.0
typescript=5.9.3

need() {
  echo "$1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "(not CI: skipping the real-client checks)" >&2
  exit 0
}

if ! .venv/bin/openapi-python-client --version 2>/dev/null | grep -q "$python_client"; then
  python3 -m venv .venv
  .venv/bin/pip install -q "openapi-python-client==$python_client" || need "could not install openapi-python-client"
fi
node_tools=.ci-tools/node
if ! [ -x "$node_tools/node_modules/.bin/tsc" ] || ! grep -q "\"version\": \"$openapi_fetch\"" "$node_tools/node_modules/openapi-fetch/package.json" 2>/dev/null; then
  command -v npm >/dev/null || need "npm is missing"
  npm install --prefix "$node_tools" --no-audit --no-fund --silent \
    "openapi-typescript@$openapi_typescript" "openapi-fetch@$openapi_fetch" "typescript@$typescript" \
    || need "could not install the npm packages"
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if ! [ -x "$nginx" ]; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx; } >/dev/null \
    || need "could not install nginx"
  nginx=/usr/sbin/nginx
fi

. scripts/start-dev-bg.sh
gen=$(mktemp -d)
nginx_pid=""
trap 'if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null; fi; kill $dev_pid 2>/dev/null; wait $dev_pid 2>/dev/null; rm -rf "$dev_work" "$gen"' EXIT
tenant=acme-prod

echo "-- Python client (openapi-python-client $python_client)"
# Its formatting hooks (ruff) come with it, in the same folder.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/openapi-python-client generate --path openapi/openapi.json \
  --output-path "$gen/cc_connection_client" --meta none >"$gen/python-generate.log" 2>&1 \
  || { cat "$gen/python-generate.log" >&2; exit 1; }
if grep -q "^Warning\|Skipping\|Unable" "$gen/python-generate.log"; then
  cat "$gen/python-generate.log" >&2
  echo "openapi-python-client skipped parts of the document" >&2
  exit 1
fi
.venv/bin/python scripts/clients/python_client.py "$gen" "$base" "$admin" "$integration" "$tenant"

echo "-- TypeScript client (openapi-typescript $openapi_typescript + openapi-fetch $openapi_fetch, tsc $typescript)"
mkdir -p "$gen/ts"
ln -s "$PWD/$node_tools/node_modules" "$gen/ts/node_modules"
"$node_tools/node_modules/.bin/openapi-typescript" openapi/openapi.json -o "$gen/ts/schema.d.ts" --silent
cp scripts/clients/typescript_client.ts "$gen/ts/main.ts"
cat >"$gen/ts/package.json" <<'JSON'
{ "type": "module" }
JSON
cat >"$gen/ts/tsconfig.json" <<'JSON'
{ "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext",
    "strict": true, "noUncheckedIndexedAccess": false, "skipLibCheck": true, "types": [], "lib": ["ES2022", "DOM"],
    "outDir": "out" },
  "files": ["main.ts", "node.d.ts"] }
JSON
# The two Node globals the program uses, declared here rather than installing @types/node.
cat >"$gen/ts/node.d.ts" <<'TS'
declare const process: { argv: string[]; exit(code: number): never };
TS
(cd "$gen/ts" && node_modules/.bin/tsc --noEmit -p . && node_modules/.bin/tsc -p .)
node "$gen/ts/out/main.js" "$base" "$admin" "$integration" "$tenant"

echo "-- behind nginx ($("$nginx" -v 2>&1 | sed 's/.*: //'), default buffering and timeouts)"
proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$gen/nginx"
user_line=""
if [ "$(id -u)" = 0 ]; then user_line="user root;"; fi
cat >"$gen/nginx/nginx.conf" <<CONF
$user_line
daemon off;
worker_processes 1;
pid $gen/nginx/nginx.pid;
error_log $gen/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $gen/nginx/body;
  proxy_temp_path $gen/nginx/proxy;
  fastcgi_temp_path $gen/nginx/fastcgi;
  uwsgi_temp_path $gen/nginx/uwsgi;
  scgi_temp_path $gen/nginx/scgi;
  server {
    listen 127.0.0.1:$proxy_port;
    location / { proxy_pass $base; }
  }
}
CONF
"$nginx" -c "$gen/nginx/nginx.conf" -p "$gen/nginx" &
nginx_pid=$!
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$proxy_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
orgs=$(curl -fs -H "Authorization: Bearer $admin" "$base/users/me/orgs" \
  | python3 -c 'import json,sys; print(" ".join(o["org_id"] for o in json.load(sys.stdin)["orgs"] if o["creative_cloud_entitled"]))')
read -r org_a org_b _ <<<"$orgs"
python3 scripts/clients/through_proxy.py "http://127.0.0.1:$proxy_port" "$base" "$admin" "$integration" \
  "$tenant" "$org_a" "$org_b"
echo "real clients and nginx: every check held"

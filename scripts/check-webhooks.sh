#!/usr/bin/env bash
# Webhook signatures checked by an independent implementation: the Python `standardwebhooks`
# package (installed into ./.venv from PyPI) verifies real deliveries of start-dev. The receiver
# is the README's one-line receiver; an endpoint is created with the README's curl line, the demo
# tenant is switched, and the receiver must verify the delivery (it exits 0 after the first).
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.1.0
if ! .venv/bin/python -c "import standardwebhooks" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q "standardwebhooks==$version"
fi

. scripts/start-dev-bg.sh
hook_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

created=$(curl -fsS -X POST -H "Authorization: Bearer $integration" -H 'Content-Type: application/json' \
  -d "{\"url\":\"http://127.0.0.1:$hook_port/hooks\"}" "$base/webhook-endpoints")
SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$created")
export SECRET PORT=$hook_port

# The README's receiver, with an exit after its first verified delivery.
timeout 60 .venv/bin/python -c 'import http.server as h,os,standardwebhooks as s;w=s.Webhook(os.environ["SECRET"]);h.HTTPServer(("127.0.0.1",int(os.environ["PORT"])),type("H",(h.BaseHTTPRequestHandler,),{"do_POST":lambda r:(print(w.verify(r.rfile.read(int(r.headers["content-length"])),dict(r.headers)),flush=True),r.send_response(204),r.end_headers(),os._exit(0))})).serve_forever()' \
  >"$dev_work/receiver.txt" 2>&1 &
receiver=$!
sleep 0.5
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"org_id":"C0FFEE00C0FFEE00C0FFEE00@AdobeOrg"}' "$base/tenants/acme-prod/creative-cloud-connection"
if ! wait "$receiver"; then
  echo "the standardwebhooks receiver did not verify a delivery:" >&2
  cat "$dev_work/receiver.txt" >&2
  exit 1
fi
grep -q "creative-cloud-connection" "$dev_work/receiver.txt"
echo "webhooks: a delivery of start-dev verified by standardwebhooks $version: $(head -c 160 "$dev_work/receiver.txt")"

"""Behind a proxy with its default settings (nginx): a stream delivers a switch within a second,
and a long poll at the largest `wait` answers 200, not the proxy's 504. Standard library only.
Arguments: the proxy's base URL, the service's own base URL, an administrator's and an
integration's token, the tenant, two orgs the administrator may connect."""

import http.client
import json
import sys
import time
import urllib.parse
import urllib.request

proxy, direct, admin, integration, tenant, org_a, org_b = sys.argv[1:8]


def check(condition, what):
    if not condition:
        sys.exit(f"through the proxy: {what}")


def get_json(base, path, token):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=70) as res:
        return res.status, json.load(res)


def switch(org):
    body = json.dumps({"org_id": org}).encode()
    req = urllib.request.Request(
        f"{direct}/tenants/{tenant}/creative-cloud-connection",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        check(res.status in (200, 201), f"switch: {res.status}")


_, listing = get_json(direct, "/creative-cloud-connections?limit=1", integration)
head = listing["position"]
url = urllib.parse.urlsplit(proxy)
stream = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
stream.request(
    "GET",
    f"/creative-cloud-connections/changes/stream?after={head}",
    headers={"Authorization": f"Bearer {integration}"},
)
res = stream.getresponse()
check(res.status == 200, f"stream: {res.status}")
check(res.getheader("content-type") == "text/event-stream", f"content-type {res.getheader('content-type')}")
check(res.readline().startswith(b"retry: "), "the stream opens with retry:")
# Each switch changes the tenant (the same org again would change nothing, and send nothing).
_, current = get_json(direct, f"/tenants/{tenant}/creative-cloud-connection", integration)
order = (org_b, org_a) if current.get("org_id") == org_a else (org_a, org_b)
for org in order:
    switch(org)
    acknowledged = time.monotonic()
    while True:
        line = res.readline()
        check(line != b"", "the stream ended")
        check(time.monotonic() - acknowledged < 5, "no change event within 5 s of the switch")
        if line.startswith(b"event: change"):
            break
    took = time.monotonic() - acknowledged
    check(took < 1.0, f"a switch reached the stream through the proxy in {took:.3f} s")
    print(f"through the proxy: a switch delivered on the stream {took * 1000:.0f} ms after it was acknowledged")
stream.close()

_, listing = get_json(direct, "/creative-cloud-connections?limit=1", integration)
started = time.monotonic()
status, page = get_json(proxy, f"/creative-cloud-connections/changes?after={listing['position']}&wait=50", integration)
took = time.monotonic() - started
check(status == 200 and page["changes"] == [], f"the long poll at wait=50: {status} {page}")
check(took >= 49, f"held for the wait: {took:.1f} s")
print(f"through the proxy: a long poll at wait=50 answered 200 after {took:.1f} s")

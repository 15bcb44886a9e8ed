"""Drives a running service with the Python client generated from openapi/openapi.json
(openapi-python-client): the listing, the change feed followed with `wait`, and a conditional first
connection. Arguments: the generated package's parent folder, the base URL, an administrator's and
an integration's token, the tenant."""

import inspect
import sys
import threading

folder, base, admin_token, integration_token, tenant = sys.argv[1:6]
sys.path.insert(0, folder)

import httpx  # noqa: E402
from cc_connection_client import AuthenticatedClient  # noqa: E402
from cc_connection_client.api.connection import get_connection, put_connection  # noqa: E402
from cc_connection_client.api.feed import get_changes, list_connections  # noqa: E402
from cc_connection_client.api.orgs import get_user_orgs  # noqa: E402
from cc_connection_client.models import ChangeKind, ChangesPage, ConnectionsPage, SwitchBody  # noqa: E402

timeout = httpx.Timeout(60.0, connect=5.0)
integration = AuthenticatedClient(base_url=base, token=integration_token, timeout=timeout, raise_on_unexpected_status=True)
admin = AuthenticatedClient(base_url=base, token=admin_token, timeout=timeout, raise_on_unexpected_status=True)


def check(condition, what):
    if not condition:
        sys.exit(f"python client: {what}")


# The listing: every field typed, `org_id` None (not Unset) for a tenant without a connection.
listing = list_connections.sync(client=integration)
check(isinstance(listing, ConnectionsPage), f"listing: {listing!r}")
listed = {c.tenant_id: c for c in listing.connections}
check(tenant in listed and listed[tenant].org_id is None, f"{tenant} listed unconnected: {listing!r}")
position = listing.position

# Follow the feed from the listing's position with a long poll, while the tenant is connected.
followed = {}
poll = threading.Thread(
    target=lambda: followed.update(page=get_changes.sync(client=integration, after=position, wait=30))
)
poll.start()

orgs = get_user_orgs.sync("me", client=admin).orgs
entitled = [o.org_id for o in orgs if o.creative_cloud_entitled]
check(len(entitled) >= 2, f"two entitled orgs: {orgs!r}")

# A conditional first connection.
read = get_connection.sync_detailed(tenant, client=admin)
check(read.status_code == 404 and "etag" in read.headers, f"404 with an ETag: {read.status_code} {read.headers}")
etag = read.headers["etag"]
put_params = inspect.signature(put_connection.sync_detailed).parameters
if "if_none_match" in put_params:
    # If-Match with the ETag of the 404 connects; If-None-Match: * then refuses (412 with the ETag).
    first = put_connection.sync_detailed(tenant, client=admin, body=SwitchBody(org_id=entitled[0]), if_match=etag)
    check(first.status_code == 201, f"If-Match of the 404: {first.status_code} {first.content!r}")
    again = put_connection.sync_detailed(tenant, client=admin, body=SwitchBody(org_id=entitled[1]), if_none_match="*")
    check(again.status_code == 412 and "etag" in again.headers, f"If-None-Match: * on a connection: {again.status_code}")
else:
    first = put_connection.sync_detailed(tenant, client=admin, body=SwitchBody(org_id=entitled[0]))
    check(first.status_code == 201, f"first connection: {first.status_code} {first.content!r}")
current = first.headers["etag"]
stale = put_connection.sync_detailed(tenant, client=admin, body=SwitchBody(org_id=entitled[1]), if_match=etag)
check(stale.status_code == 412, f"a stale If-Match: {stale.status_code}")
switched = put_connection.sync_detailed(tenant, client=admin, body=SwitchBody(org_id=entitled[1]), if_match=current)
check(switched.status_code == 200, f"If-Match of the current ETag: {switched.status_code} {switched.content!r}")

poll.join(timeout=40)
page = followed.get("page")
check(isinstance(page, ChangesPage) and page.changes, f"the long poll woke with the connection: {page!r}")
first_change = page.changes[0]
check(first_change.kind == ChangeKind.CONNECTED and first_change.tenant_id == tenant, f"connected: {first_change!r}")
check(first_change.previous_org_id is None, "previous_org_id is None, not Unset")
rest = get_changes.sync(client=integration, after=page.position, wait=5)
check(
    isinstance(rest, ChangesPage) and [c.kind for c in rest.changes][:1] == [ChangeKind.SWITCHED],
    f"then the switch: {rest!r}",
)
print("python client: listed, followed the feed with wait, connected conditionally, switched with If-Match")

// Drives a running service with openapi-fetch typed by openapi-typescript from
// openapi/openapi.json; `tsc --noEmit` checking this file is half the point (exact types: the
// change's kind an enum, always-present fields not optional, /changes answering JSON only).
// Arguments: the base URL, an administrator's and an integration's token, the tenant.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Change = components["schemas"]["Change"];
type Kind = "tenant-registered" | "connected" | "switched" | "disconnected" | "tenant-removed";

const [base, adminToken, integrationToken, tenant] = process.argv.slice(2);
const integration = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${integrationToken}` } });
const admin = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${adminToken}` } });

function check(condition: boolean, what: string): asserts condition {
  if (!condition) {
    console.error(`typescript client: ${what}`);
    process.exit(1);
  }
}

// Compile-time: exactly these types, nothing optional or `| string`.
const kindOf = (c: Change): Kind => c.kind;
const orgOf = (c: Change): string | null => c.org_id;
const previousOf = (c: Change): string | null => c.previous_org_id;

const listing = await integration.GET("/creative-cloud-connections", { params: { query: { limit: 100 } } });
check(listing.data !== undefined, `listing: ${listing.response.status}`);
const mine = listing.data.connections.find((c) => c.tenant_id === tenant);
check(mine !== undefined, "the tenant is listed");
const orgId: string | null = mine.org_id;

const page = await integration.GET("/creative-cloud-connections/changes", {
  params: { query: { after: listing.data.position, wait: 1 } },
});
check(page.data !== undefined, `changes: ${page.response.status}`);
const changes: Change[] = page.data.changes;
check(page.data.position === listing.data.position, "nothing after the listing's position");
for (const c of changes) {
  kindOf(c);
  orgOf(c);
  previousOf(c);
}

// A conditional switch: If-Match with the ETag a read gave.
const read = await admin.GET("/tenants/{tenant_id}/creative-cloud-connection", {
  params: { path: { tenant_id: tenant } },
});
const etag = read.response.headers.get("etag");
check(etag !== null, `a read carries an ETag (${read.response.status})`);
const orgs = await admin.GET("/users/{user_id}/orgs", { params: { path: { user_id: "me" } } });
check(orgs.data !== undefined, "orgs");
const target = orgs.data.orgs.find((o) => o.creative_cloud_entitled && o.org_id !== orgId);
check(target !== undefined, "an entitled org to switch to");
const put = await admin.PUT("/tenants/{tenant_id}/creative-cloud-connection", {
  params: { path: { tenant_id: tenant }, header: { "If-Match": etag } },
  body: { org_id: target.org_id },
});
check(put.response.status === 200 || put.response.status === 201, `conditional switch: ${put.response.status}`);
const followed = await integration.GET("/creative-cloud-connections/changes", {
  params: { query: { after: page.data.position, wait: 5 } },
});
check(followed.data !== undefined && followed.data.changes.length > 0, "the switch is in the feed");
const last = followed.data.changes[followed.data.changes.length - 1];
check(kindOf(last) === "switched" || kindOf(last) === "connected", `its kind: ${last.kind}`);
console.log("typescript client: listed, followed the feed with wait, switched with If-Match");

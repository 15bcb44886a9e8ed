//! The tenant registry over the API (api.md, "Provisioning"): `PUT`, `GET`, `DELETE
//! /tenants/{tenant_id}` and `GET /tenants`, for the provisioning system's service token only, with
//! the same rules and feed changes as the `tenant` commands.

use cc_connection::dev_ims::{TokenSpec, world};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::cli::ccc;
use crate::common::db;
use crate::each_backend;
use crate::helpers::{TENANT, TestApp, assert_problem, send, spawn_app_with, spawn_replica};

const CHANGES: &str = "/creative-cloud-connections/changes";

/// A service token of the development provisioning client with the provision scope.
fn provisioning_token(app: &TestApp) -> String {
    app.service_token(world::PROVISIONING_CLIENT, &[world::PROVISION_SCOPE])
}

fn tenant_path(tenant: &str) -> String {
    format!("/tenants/{tenant}")
}

/// The body of a registration in the home org of the demo tenant, administered by `groups`.
fn registration(groups: &[&str]) -> Value {
    json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": groups })
}

/// `PUT /tenants/<tenant>` with `body`, as the provisioning system, with extra `headers`.
async fn put_tenant(app: &TestApp, tenant: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
    let mut req = app
        .request(Method::PUT, &tenant_path(tenant), Some(&provisioning_token(app)))
        .json(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(req).await
}

/// `method` on `path` as the provisioning system, with extra `headers`.
async fn call(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = app.request(method, path, Some(&provisioning_token(app)));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(req).await
}

fn etag(res: &Response) -> Option<String> {
    res.headers().get("etag").map(|v| v.to_str().unwrap().to_owned())
}

/// Asserts `res` is `status` with `ETag: <tag>`; returns its body.
async fn expect(res: Response, status: u16, tag: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(etag(&res).as_deref(), Some(tag), "ETag");
    res.json().await.unwrap()
}

/// Every change of the feed, as the integration reads it.
async fn feed(app: &TestApp) -> Vec<Value> {
    let res = app
        .call(
            Method::GET,
            &format!("{CHANGES}?after=0&limit=1000"),
            Some(&app.integration_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    page["changes"].as_array().unwrap().clone()
}

fn changes_of<'a>(feed: &'a [Value], tenant: &str) -> Vec<&'a Value> {
    feed.iter().filter(|c| c["tenant_id"] == tenant).collect()
}

#[tokio::test]
async fn the_provisioning_system_registers_updates_reads_lists_and_removes_tenants() {
    each_backend!(|app| {
        let client = format!("provisioning:{}", world::PROVISIONING_CLIENT);
        // A new tenant: 201, its entry at version 1, no connection.
        let res = put_tenant(&app, "globex", &registration(&["800001"]), &[]).await;
        assert_eq!(res.headers()["location"], "/tenants/globex");
        let created = expect(res, 201, "\"1\"").await;
        assert_eq!(created["tenant_id"], "globex");
        assert_eq!(created["ims_org"], world::ACME_HOME_ORG);
        assert_eq!(created["admin_groups"], json!(["800001"]));
        assert_eq!(created["connection"], Value::Null);
        assert_eq!(created["registered_at"], created["updated_at"]);
        // The same body again changes nothing.
        let same = expect(
            put_tenant(&app, "globex", &registration(&["800001"]), &[]).await,
            200,
            "\"1\"",
        )
        .await;
        assert_eq!(same, created, "{:?}", app.backend);
        // New groups replace the list.
        let updated = expect(
            put_tenant(&app, "globex", &registration(&["800001", "800002"]), &[]).await,
            200,
            "\"2\"",
        )
        .await;
        assert_eq!(updated["admin_groups"], json!(["800001", "800002"]));
        // The same groups in another order are the same list: nothing changes.
        let reordered = put_tenant(&app, "globex", &registration(&["800002", "800001"]), &[]).await;
        assert_eq!(expect(reordered, 200, "\"2\"").await, updated);
        assert_eq!(updated["registered_at"], created["registered_at"]);
        assert_ne!(updated["updated_at"], created["updated_at"]);
        // Another home org is never set in place.
        let other = json!({ "ims_org": world::OTHER_ORG, "admin_groups": ["800001"] });
        assert_problem(
            put_tenant(&app, "globex", &other, &[]).await,
            409,
            "tenant-org-conflict",
        )
        .await;
        let read = expect(
            call(&app, Method::GET, &tenant_path("globex"), &[]).await,
            200,
            "\"2\"",
        )
        .await;
        assert_eq!(read, updated, "the conflict changed nothing");
        let res = call(
            &app,
            Method::GET,
            &tenant_path("globex"),
            &[("If-None-Match", "\"2\"")],
        )
        .await;
        assert_eq!(res.status(), 304);

        // A connected tenant: its connection as the connection's GET answers it.
        let connected = app.connected_by_admin().await;
        let connection = app.connection_json().await;
        let read = expect(
            call(&app, Method::GET, &tenant_path(TENANT), &[]).await,
            200,
            "\"1\"",
        )
        .await;
        assert_eq!(read["connection"], connection);

        // The listing, a page at a time.
        let first: Value = call(&app, Method::GET, "/tenants?limit=1", &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(first["tenants"][0]["tenant_id"], TENANT, "{first}");
        assert_eq!(first["tenants"][0]["connection"], connection);
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let second: Value = call(
            &app,
            Method::GET,
            &format!("/tenants?limit=1&cursor={cursor}"),
            &[],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(second["tenants"], json!([updated]));
        assert_eq!(second["next_cursor"], Value::Null);

        // Removal, as `tenant remove`: the connection ends, by the provisioning client.
        let res = call(&app, Method::DELETE, &tenant_path(TENANT), &[]).await;
        assert_eq!(res.status(), 204);
        assert_problem(
            call(&app, Method::GET, &tenant_path(TENANT), &[]).await,
            404,
            "unknown-tenant",
        )
        .await;
        assert_problem(
            call(&app, Method::DELETE, &tenant_path(TENANT), &[]).await,
            404,
            "unknown-tenant",
        )
        .await;
        assert_problem(
            app.get_connection(&app.integration_token()).await,
            404,
            "unknown-tenant",
        )
        .await;
        let listed: Value = call(&app, Method::GET, "/tenants", &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["tenants"].as_array().unwrap().len(), 1, "{listed}");

        // Registered again: 201, no connection, and the history goes on, the removal by the client.
        expect(
            put_tenant(&app, TENANT, &registration(&[world::ACME_ADMIN_GROUP]), &[]).await,
            201,
            "\"2\"",
        )
        .await;
        let history = app.history_entries().await;
        assert_eq!(history[0]["end_reason"], "tenant-removed");
        assert_eq!(history[0]["ended_by"], client.as_str());
        app.assert_no_connection().await;
        drop(connected);

        // The feed: both registrations of the demo tenant's, its removal, by the client.
        let feed = feed(&app).await;
        let kinds: Vec<(&str, &str)> = changes_of(&feed, TENANT)
            .iter()
            .map(|c| (c["kind"].as_str().unwrap(), c["by"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("tenant-registered", "cli:unknown"),
                ("connected", world::ALICE_FEDERATED),
                ("tenant-removed", client.as_str()),
                ("tenant-registered", client.as_str()),
            ],
            "{:?}",
            app.backend
        );
        let globex = changes_of(&feed, "globex");
        assert_eq!(
            globex.len(),
            1,
            "one registration; group changes are no feed change"
        );
        assert_eq!(globex[0]["kind"], "tenant-registered");
        assert_eq!(globex[0]["org_id"], Value::Null);
        assert_eq!(globex[0]["previous_org_id"], Value::Null);
        assert_eq!(globex[0]["by"], client.as_str());
    });
}

#[tokio::test]
async fn a_tenant_registered_again_is_in_the_feed_above_every_revision_it_had() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        assert_eq!(
            call(&app, Method::DELETE, &tenant_path(TENANT), &[])
                .await
                .status(),
            204
        );
        // A follower that saw the removal holds its revision; the registration must be above it.
        let before = feed(&app).await;
        let removed = before.last().unwrap().clone();
        assert_eq!(removed["kind"], "tenant-removed");
        put_tenant(&app, TENANT, &registration(&[world::ACME_ADMIN_GROUP]), &[]).await;
        let after = feed(&app).await;
        let registered = after.last().unwrap();
        assert_eq!(registered["kind"], "tenant-registered");
        assert!(
            registered["revision"].as_i64() > removed["revision"].as_i64(),
            "{registered} after {removed}"
        );
        // And a fresh listing agrees with the follower.
        let listing: Value = app
            .call(
                Method::GET,
                "/creative-cloud-connections",
                Some(&app.integration_token()),
            )
            .await
            .json()
            .await
            .unwrap();
        let item = &listing["connections"][0];
        assert_eq!(item["tenant_id"], TENANT);
        assert_eq!(item["revision"], registered["revision"]);
        assert_eq!(item["org_id"], Value::Null);
    });
}

#[tokio::test]
async fn registry_writes_honour_if_match_and_if_none_match_and_412_carries_the_current_etag() {
    each_backend!(|app| {
        let groups = registration(&["1"]);
        let create_only = [("If-None-Match", "*")];
        expect(put_tenant(&app, "t1", &groups, &create_only).await, 201, "\"1\"").await;
        // Create-only again: refused, with the current ETag.
        let res = put_tenant(&app, "t1", &registration(&["2"]), &create_only).await;
        assert_eq!(etag(&res).as_deref(), Some("\"1\""));
        assert_problem(res, 412, "precondition-failed").await;
        expect(
            put_tenant(&app, "t1", &registration(&["2"]), &[("If-Match", "\"1\"")]).await,
            200,
            "\"2\"",
        )
        .await;
        // A stale ETag (and one that is not ours) is refused with the current one.
        for stale in ["\"1\"", "W/\"2\"", "\"abc\""] {
            let res = put_tenant(&app, "t1", &registration(&["3"]), &[("If-Match", stale)]).await;
            assert_eq!(etag(&res).as_deref(), Some("\"2\""), "{stale}");
            assert_problem(res, 412, "precondition-failed").await;
        }
        let res = call(&app, Method::DELETE, &tenant_path("t1"), &[("If-Match", "\"1\"")]).await;
        assert_eq!(etag(&res).as_deref(), Some("\"2\""));
        assert_problem(res, 412, "precondition-failed").await;
        // Nothing changed.
        let read = expect(
            call(&app, Method::GET, &tenant_path("t1"), &[]).await,
            200,
            "\"2\"",
        )
        .await;
        assert_eq!(read["admin_groups"], json!(["2"]));
        // If-Match on a tenant that is not registered never holds.
        let res = put_tenant(&app, "t2", &groups, &[("If-Match", "*")]).await;
        assert_eq!(etag(&res), None);
        assert_problem(res, 412, "precondition-failed").await;
        assert_problem(
            call(&app, Method::GET, &tenant_path("t2"), &[]).await,
            404,
            "unknown-tenant",
        )
        .await;
        let res = call(&app, Method::DELETE, &tenant_path("t1"), &[("If-Match", "\"2\"")]).await;
        assert_eq!(res.status(), 204);
        // Registered again: the version goes on, so an ETag from before the removal never holds.
        let res = put_tenant(&app, "t1", &groups, &[("If-Match", "\"2\"")]).await;
        assert_problem(res, 412, "precondition-failed").await;
        expect(put_tenant(&app, "t1", &groups, &create_only).await, 201, "\"3\"").await;
    });
}

#[tokio::test]
async fn bad_registrations_are_400_invalid_request_and_change_nothing() {
    each_backend!(|app| {
        let head_before = feed(&app).await.len();
        let bodies = [
            json!({ "ims_org": "0123456789ABCDEF0123456@AdobeOrg", "admin_groups": ["1"] }),
            json!({ "ims_org": "acme", "admin_groups": ["1"] }),
            json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": [] }),
            json!({ "ims_org": world::ACME_HOME_ORG }),
            json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": [""] }),
            json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": ["1"], "name": "Globex" }),
            json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": "1" }),
            json!({ "ims_org": world::ACME_HOME_ORG, "admin_groups": [1] }),
            json!({ "ims_org": 5, "admin_groups": ["1"] }),
            json!({ "admin_groups": ["1"] }),
            json!(["1"]),
        ];
        for body in &bodies {
            let res = put_tenant(&app, "globex", body, &[]).await;
            assert_problem(res, 400, "invalid-request").await;
            // Nor on a registered tenant.
            let res = put_tenant(&app, TENANT, body, &[]).await;
            assert_problem(res, 400, "invalid-request").await;
        }
        let long = "a".repeat(129);
        for bad in ["-globex", "glo%2Fbex", long.as_str()] {
            let res = put_tenant(&app, bad, &registration(&["1"]), &[]).await;
            assert_problem(res, 400, "invalid-request").await;
        }
        assert_problem(
            call(&app, Method::GET, &tenant_path("globex"), &[]).await,
            404,
            "unknown-tenant",
        )
        .await;
        let demo = expect(
            call(&app, Method::GET, &tenant_path(TENANT), &[]).await,
            200,
            "\"1\"",
        )
        .await;
        assert_eq!(demo["admin_groups"], json!([world::ACME_ADMIN_GROUP]));
        assert_eq!(feed(&app).await.len(), head_before, "nothing in the feed");
        for query in ["?limit=0", "?limit=1001", "?cursor=bad%2Fid", "?limit=x"] {
            let res = call(&app, Method::GET, &format!("/tenants{query}"), &[]).await;
            assert_problem(res, 400, "invalid-request").await;
        }
    });
}

#[tokio::test]
async fn only_a_provisioning_service_token_with_the_provision_scope_may_call_the_registry() {
    each_backend!(|app| {
        let no_scope = app.service_token(world::PROVISIONING_CLIENT, &[world::READ_SCOPE]);
        let person = app.ims.mint(&TokenSpec::user(
            world::ALICE_FEDERATED,
            world::PROVISIONING_CLIENT,
            &[world::PROVISION_SCOPE],
        ));
        let integration_with_scope = app.service_token(world::INTEGRATION_CLIENT, &[world::PROVISION_SCOPE]);
        let refused = [
            (app.admin_token(), "forbidden"),
            (app.integration_token(), "forbidden"),
            (integration_with_scope, "forbidden"),
            (person, "forbidden"),
            (no_scope, "insufficient-scope"),
        ];
        let body = registration(&["1"]);
        for (token, slug) in &refused {
            for (method, path) in [
                (Method::PUT, tenant_path("globex")),
                (Method::GET, tenant_path(TENANT)),
                (Method::DELETE, tenant_path(TENANT)),
                (Method::GET, "/tenants".to_owned()),
            ] {
                let res = send(app.request(method.clone(), &path, Some(token)).json(&body)).await;
                assert_problem(res, 403, slug).await;
            }
        }
        assert_problem(
            app.call(Method::GET, "/tenants", None).await,
            401,
            "invalid-token",
        )
        .await;
        // The provisioning client's technical account is a service token too.
        let technical = app.ims.mint(&TokenSpec::user(
            "A0000000000000000000000P@techacct.adobe.com",
            world::PROVISIONING_CLIENT,
            &[world::PROVISION_SCOPE],
        ));
        let res = app.call(Method::GET, "/tenants", Some(&technical)).await;
        assert_eq!(res.status(), 200);
        // Nothing was registered or removed.
        let listed: Value = call(&app, Method::GET, "/tenants", &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["tenants"].as_array().unwrap().len(), 1);
    });
}

#[tokio::test]
async fn with_no_provisioning_client_configured_no_one_may_provision() {
    for backend in db::backends() {
        let app = spawn_app_with(backend, |c| c.provisioning_client_ids.clear()).await;
        let token = provisioning_token(&app);
        let res = put_tenant(&app, "globex", &registration(&["1"]), &[]).await;
        assert_problem(res, 403, "forbidden").await;
        let res = app.call(Method::GET, "/tenants", Some(&token)).await;
        assert_problem(res, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn administrator_groups_set_over_the_api_are_in_effect_at_once_on_another_replica() {
    each_backend!(|app| {
        let replica = spawn_replica(&app).await;
        let history = format!("{}/history", TestApp::connection_path(TENANT));
        let alice = app.admin_token();
        let bob = app.user_token(world::BOB_MEMBER, true);
        // Both read on the replica first: their org lists are in its cache from then on.
        assert_eq!(
            replica.call(Method::GET, &history, Some(&alice)).await.status(),
            200
        );
        assert_problem(
            replica.call(Method::GET, &history, Some(&bob)).await,
            403,
            "forbidden",
        )
        .await;
        let both = registration(&[world::ACME_ADMIN_GROUP, world::ACME_USERS_GROUP]);
        expect(put_tenant(&app, TENANT, &both, &[]).await, 200, "\"2\"").await;
        assert_eq!(
            replica.call(Method::GET, &history, Some(&bob)).await.status(),
            200,
            "{:?}: bob's group administers the tenant at once",
            app.backend
        );
        let users_only = registration(&[world::ACME_USERS_GROUP]);
        expect(put_tenant(&app, TENANT, &users_only, &[]).await, 200, "\"3\"").await;
        assert_problem(
            replica.call(Method::GET, &history, Some(&alice)).await,
            403,
            "forbidden",
        )
        .await;
        // And a switch on the replica is judged by the new list too.
        let res = replica.put_connection(&alice, world::ACME_CREATIVE_ORG).await;
        assert_problem(res, 403, "forbidden").await;
        let res = replica.put_connection(&bob, world::ACME_CREATIVE_ORG).await;
        assert_eq!(res.status(), 201, "{:?}", app.backend);
    });
}

/// Issue 29, item 4: `tenant add` is in the feed, so a follower is as current as a fresh listing.
#[tokio::test]
async fn tenant_add_is_in_the_feed_so_a_follower_is_as_current_as_a_fresh_listing() {
    each_backend!(|app| {
        let integration = app.integration_token();
        let listing: Value = app
            .call(Method::GET, "/creative-cloud-connections", Some(&integration))
            .await
            .json()
            .await
            .unwrap();
        let position = listing["position"].as_str().unwrap().to_owned();
        let add = [
            "tenant",
            "add",
            "globex",
            "--ims-org",
            world::OTHER_ORG,
            "--admin-group",
            world::OTHER_ADMIN_GROUP,
        ];
        assert!(ccc(&app.db.url, &add).status.success());
        let page: Value = app
            .call(
                Method::GET,
                &format!("{CHANGES}?after={position}"),
                Some(&integration),
            )
            .await
            .json()
            .await
            .unwrap();
        let changes = page["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{:?}: {page}", app.backend);
        let change = &changes[0];
        assert_eq!(change["kind"], "tenant-registered");
        assert_eq!(change["tenant_id"], "globex");
        // The operator, never the machine's login (`$USER` is ops-alice here).
        assert_eq!(change["by"], "cli:operator");
        // What a fresh listing shows of it.
        let fresh: Value = app
            .call(Method::GET, "/creative-cloud-connections", Some(&integration))
            .await
            .json()
            .await
            .unwrap();
        let listed = fresh["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tenant_id"] == "globex")
            .unwrap()
            .clone();
        assert_eq!(listed["revision"], change["revision"]);
        // Removed and added again: a registration above the removal's revision.
        assert!(ccc(&app.db.url, &["tenant", "remove", "globex"]).status.success());
        assert!(ccc(&app.db.url, &add).status.success());
        let all = feed(&app).await;
        let globex = changes_of(&all, "globex");
        let kinds: Vec<&str> = globex.iter().map(|c| c["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["tenant-registered", "tenant-removed", "tenant-registered"]
        );
        assert!(globex[2]["revision"].as_i64() > globex[1]["revision"].as_i64());
        // The API reads what the command wrote.
        let read = expect(
            call(&app, Method::GET, &tenant_path("globex"), &[]).await,
            200,
            "\"2\"",
        )
        .await;
        assert_eq!(read["ims_org"], world::OTHER_ORG);
    });
}

/// Several `serve` processes on one PostgreSQL database register the same tenants at once, as a
/// provisioning system retrying through a load balancer does: one entry each, 201 exactly once,
/// one `tenant-registered` in the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL"]
async fn concurrent_registrations_from_three_serve_processes_leave_one_entry_and_answer_201_once() {
    use crate::process::{ServeProcess, ims_and_postgres, serve_command};
    const TENANTS: usize = 6;
    const CALLS: usize = 12;
    let (ims, db) = ims_and_postgres().await;
    let client = reqwest::Client::new();
    let replicas: Vec<ServeProcess> = (0..3)
        .map(|_| {
            let mut cmd = serve_command(&ims, &db.url);
            cmd.env("CCC_PROVISIONING_CLIENT_IDS", world::PROVISIONING_CLIENT);
            ServeProcess::start(&mut cmd)
        })
        .collect();
    for replica in &replicas {
        replica.wait_ready(&client).await;
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base().to_owned()).collect();
    let token = ims.mint(&TokenSpec::service(
        world::PROVISIONING_CLIENT,
        &[world::PROVISION_SCOPE],
    ));
    let bodies = [registration(&["1"]), registration(&["1", "2"])];
    for t in 0..TENANTS {
        let tenant = format!("race-{t}");
        let calls = (0..CALLS).map(|i| {
            let req = client
                .put(format!("{}{}", bases[i % 3], tenant_path(&tenant)))
                .bearer_auth(&token)
                .json(&bodies[i % 2]);
            async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, body)
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        for (status, body) in &answers {
            assert!(matches!(status, 200 | 201), "{tenant}: {status} {body}");
        }
        let created = answers.iter().filter(|(s, _)| *s == 201).count();
        assert_eq!(created, 1, "{tenant}: 201 once: {answers:?}");
    }
    let listed: Value = client
        .get(format!("{}/tenants", bases[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..TENANTS).map(|t| format!("race-{t}")).collect();
    assert_eq!(ids, expected);
    let integration = crate::helpers::integration_token(&ims);
    let page: Value = client
        .get(format!("{}{CHANGES}?limit=1000", bases[2]))
        .bearer_auth(&integration)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes = page["changes"].as_array().unwrap();
    for tenant in &expected {
        let registrations = changes
            .iter()
            .filter(|c| c["tenant_id"] == tenant.as_str() && c["kind"] == "tenant-registered")
            .count();
        assert_eq!(registrations, 1, "{tenant}: one registration in the feed");
    }
    assert_eq!(changes.len(), TENANTS, "nothing but the registrations");
}

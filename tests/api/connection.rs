//! The connection resource: read, switch, disconnect, history, and who may do each.

use cc_connection::dev_ims::{TokenSpec, world};
use reqwest::Method;
use serde_json::{Value, json};

use crate::each_backend;
use crate::helpers::{TENANT, TestApp, assert_problem, send, spawn_app};

#[tokio::test]
async fn first_switch_returns_201_and_integration_reads_it_with_etag() {
    each_backend!(|app| {
        let res = app
            .put_connection(&app.admin_token(), world::ACME_CREATIVE_ORG)
            .await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["etag"], "\"1\"");
        assert_eq!(res.headers()["location"], TestApp::connection_path(TENANT));
        let created: Value = res.json().await.unwrap();
        assert_eq!(created["org_id"], world::ACME_CREATIVE_ORG);
        assert_eq!(created["org_name"], "Acme Creative");
        assert_eq!(created["connected_by"], world::ALICE_FEDERATED);
        assert_eq!(created["revision"], 1);

        let res = app.get_connection(&app.integration_token()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["etag"], "\"1\"");
        let read: Value = res.json().await.unwrap();
        assert_eq!(read, created);
    });
}

#[tokio::test]
async fn any_member_of_the_home_org_reads_the_connection() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        let res = app
            .get_connection(&app.user_token(world::BOB_MEMBER, false))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["org_id"], world::ACME_CREATIVE_ORG);
    });
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_returns_304() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        let token = app.integration_token();
        let res = app.get_connection_if_none_match(&token, "\"1\"").await;
        assert_eq!(res.status(), 304);
        assert_eq!(res.headers()["etag"], "\"1\"");
        let res = app.get_connection_if_none_match(&token, "\"0\"").await;
        assert_eq!(res.status(), 200);
    });
}

#[tokio::test]
async fn reading_a_tenant_without_connection_returns_404_no_connection() {
    each_backend!(|app| {
        app.assert_no_connection().await;
    });
}

#[tokio::test]
async fn reading_an_unregistered_tenant_returns_404_unknown_tenant() {
    each_backend!(|app| {
        let path = TestApp::connection_path("no-such-tenant");
        let res = app.call(Method::GET, &path, Some(&app.integration_token())).await;
        assert_problem(res, 404, "unknown-tenant").await;
    });
}

#[tokio::test]
async fn a_user_outside_the_home_org_cannot_read_403_forbidden() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        let res = app
            .get_connection(&app.user_token(world::MALLORY_OTHER_ADMIN, true))
            .await;
        assert_problem(res, 403, "forbidden").await;
    });
}

#[tokio::test]
async fn an_integration_without_the_read_scope_gets_403_insufficient_scope() {
    each_backend!(|app| {
        let token = app.service_token(world::INTEGRATION_CLIENT, &["openid"]);
        let res = app.get_connection(&token).await;
        let www = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            www.contains("insufficient_scope") && www.contains(world::READ_SCOPE),
            "{www}"
        );
        assert_problem(res, 403, "insufficient-scope").await;
    });
}

#[tokio::test]
async fn a_non_integration_service_token_cannot_read() {
    each_backend!(|app| {
        let token = app.service_token(world::UI_CLIENT, &[world::READ_SCOPE]);
        assert_problem(app.get_connection(&token).await, 403, "forbidden").await;
    });
}

#[tokio::test]
async fn a_user_token_of_an_integration_client_is_judged_as_a_user() {
    each_backend!(|app| {
        app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
            .await;
        // Signed in to Express with their own id: no integration rights, not a member of Acme.
        let mallory = app.integration_user_token(world::MALLORY_OTHER_ADMIN);
        assert_problem(app.get_connection(&mallory).await, 403, "forbidden").await;
        // A member of the tenant's home org reads as a member.
        let bob = app.integration_user_token(world::BOB_MEMBER);
        assert_eq!(app.get_connection(&bob).await.status(), 200);
        // A service token naming the client's technical account is the integration itself.
        let techacct = app.ims.mint(&TokenSpec::user(
            world::EXPRESS_TECHNICAL_ACCOUNT,
            world::INTEGRATION_CLIENT,
            &[world::READ_SCOPE],
        ));
        assert_eq!(app.get_connection(&techacct).await.status(), 200);
    });
}

#[tokio::test]
async fn switching_replaces_the_active_org_and_keeps_the_old_one_in_history() {
    each_backend!(|app| {
        let admin = app.connected_by_admin().await;
        let res = app.put_expecting(&admin, world::ACME_DESIGN_ORG, 200).await;
        assert_eq!(res.headers()["etag"], "\"2\"");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["org_id"], world::ACME_DESIGN_ORG);

        let history = app.history_json().await;
        let entries = history["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["org_id"], world::ACME_DESIGN_ORG);
        assert_eq!(entries[0]["active"], true);
        assert_eq!(entries[1]["org_id"], world::ACME_CREATIVE_ORG);
        assert_eq!(entries[1]["active"], false);
        assert_eq!(entries[1]["ended_by"], world::ALICE_FEDERATED);
        assert_eq!(entries[1]["end_reason"], "replaced");
        assert!(entries[1]["ended_at"].is_string());
    });
}

#[tokio::test]
async fn switching_to_the_active_org_again_changes_nothing() {
    each_backend!(|app| {
        let admin = app.admin_token();
        app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
        let res = app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 200).await;
        assert_eq!(res.headers()["etag"], "\"1\"");
        assert_eq!(app.history_entries().await.len(), 1);
    });
}

#[tokio::test]
async fn personal_adobe_id_with_the_same_email_is_not_entitled_422() {
    each_backend!(|app| {
        // Same email as the federated admin, who is entitled; this account is not: users are ids.
        let personal = app.user_token(world::ALICE_PERSONAL, true);
        app.put_refused(
            &personal,
            world::ACME_CREATIVE_ORG,
            422,
            "no-creative-cloud-entitlement",
        )
        .await;
        app.assert_no_connection().await;
        // The federated ID with that email may.
        app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
            .await;
    });
}

#[tokio::test]
async fn an_org_the_admin_cannot_see_is_refused_422_org_not_accessible() {
    each_backend!(|app| {
        app.put_refused(&app.admin_token(), world::OTHER_ORG, 422, "org-not-accessible")
            .await;
    });
}

#[tokio::test]
async fn entitlements_must_be_active_creative_cloud_in_that_org() {
    each_backend!(|app| {
        let not_entitled = "no-creative-cloud-entitlement";
        // Access without Creative Cloud.
        app.put_refused(&app.admin_token(), world::NO_CC_ORG, 422, not_entitled)
            .await;
        // A Creative Cloud entitlement that is not ACTIVE.
        let carol = app.user_token(world::CAROL_EXPIRED_CC, true);
        app.put_refused(&carol, world::ACME_CREATIVE_ORG, 422, not_entitled)
            .await;
        // An active entitlement of another service.
        let dave = app.user_token(world::DAVE_OTHER_SERVICE, true);
        app.put_refused(&dave, world::ACME_CREATIVE_ORG, 422, not_entitled)
            .await;
        app.assert_no_connection().await;
    });
}

#[tokio::test]
async fn a_member_who_is_not_an_administrator_cannot_switch_403() {
    each_backend!(|app| {
        let bob = app.user_token(world::BOB_MEMBER, true);
        app.put_refused(&bob, world::ACME_CREATIVE_ORG, 403, "forbidden")
            .await;
        assert_problem(app.delete_connection(&bob).await, 403, "forbidden").await;
    });
}

#[tokio::test]
async fn an_administrator_of_another_org_is_refused_whatever_the_scope() {
    each_backend!(|app| {
        let mallory = app.user_token(world::MALLORY_OTHER_ADMIN, true);
        app.put_refused(&mallory, world::OTHER_ORG, 403, "forbidden")
            .await;
        assert_problem(app.history(&mallory, "").await, 403, "forbidden").await;
    });
}

#[tokio::test]
async fn switching_without_the_admin_scope_returns_403_insufficient_scope() {
    each_backend!(|app| {
        let alice = app.user_token(world::ALICE_FEDERATED, false);
        let res = app.put_connection(&alice, world::ACME_CREATIVE_ORG).await;
        let www = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            www.contains(r#"error="insufficient_scope""#) && www.contains(world::ADMIN_SCOPE),
            "{www}"
        );
        assert_problem(res, 403, "insufficient-scope").await;
    });
}

#[tokio::test]
async fn integrations_cannot_switch() {
    each_backend!(|app| {
        let token = app.service_token(
            world::INTEGRATION_CLIENT,
            &[world::READ_SCOPE, world::ADMIN_SCOPE],
        );
        app.put_refused(&token, world::ACME_CREATIVE_ORG, 403, "forbidden")
            .await;
    });
}

#[tokio::test]
async fn switching_an_unregistered_tenant_is_403_forbidden_as_for_a_tenant_one_does_not_administer() {
    each_backend!(|app| {
        let res = app
            .request(
                Method::PUT,
                &TestApp::connection_path("globex"),
                Some(&app.admin_token()),
            )
            .json(&serde_json::json!({"org_id": world::ACME_CREATIVE_ORG}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;
    });
}

/// Item 8 of the third hardening round: a token does not tell which tenants exist. Every caller but
/// an integration gets the same 403 for a registered tenant they may not see and an unregistered one.
#[tokio::test]
async fn a_tenant_a_caller_may_not_see_is_the_same_403_registered_or_not() {
    each_backend!(|app| {
        app.connected_by_admin().await;
        let registered = TestApp::connection_path(TENANT);
        let unregistered = TestApp::connection_path("no-such-tenant");
        let history = |path: &str| format!("{path}/history");
        // Reads: an outsider (registered tenant) and a member of Acme (unregistered tenant).
        let mallory = app.user_token(world::MALLORY_OTHER_ADMIN, true);
        let bob = app.user_token(world::BOB_MEMBER, false);
        let seen = assert_problem(
            app.call(Method::GET, &registered, Some(&mallory)).await,
            403,
            "forbidden",
        )
        .await;
        for token in [&mallory, &bob] {
            let res = app.call(Method::GET, &unregistered, Some(token)).await;
            let unseen = assert_problem(res, 403, "forbidden").await;
            assert_eq!(unseen["detail"], seen["detail"], "the same answer either way");
        }
        // Administrator routes: Mallory administers another org; Alice administers Acme only.
        let alice = app.admin_token();
        let body = serde_json::json!({"org_id": world::ACME_CREATIVE_ORG});
        for (method, path) in [
            (Method::PUT, registered.clone()),
            (Method::DELETE, registered.clone()),
            (Method::GET, history(&registered)),
        ] {
            let res = app
                .request(method.clone(), &path, Some(&mallory))
                .json(&body)
                .send()
                .await
                .unwrap();
            let seen = assert_problem(res, 403, "forbidden").await;
            let other = path.replace(TENANT, "no-such-tenant");
            for token in [&mallory, &alice] {
                let res = app
                    .request(method.clone(), &other, Some(token))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let unseen = assert_problem(res, 403, "forbidden").await;
                assert_eq!(unseen["detail"], seen["detail"], "{method} {other}");
            }
        }
        // An integration, which may read any tenant, is told the tenant is not registered.
        let res = app
            .call(Method::GET, &unregistered, Some(&app.integration_token()))
            .await;
        assert_problem(res, 404, "unknown-tenant").await;
    });
}

/// Item 7 of the third hardening round: a technical account is a service token, never a user, even
/// when IMS lists it in the tenant's administrator group.
#[tokio::test]
async fn a_technical_account_is_never_an_administrator_or_a_user() {
    // Domains are compared without regard to case (fourth hardening round, item 5).
    let mixed_case = world::EXPRESS_TECHNICAL_ACCOUNT.replace("techacct.adobe.com", "TechAcct.Adobe.COM");
    each_backend!(|app| {
        app.connected_by_admin().await;
        let mut scopes: Vec<&str> = world::USER_SCOPES.to_vec();
        scopes.push(world::ADMIN_SCOPE);
        for account in [world::EXPRESS_TECHNICAL_ACCOUNT, mixed_case.as_str()] {
            let techacct = app.ims.mint(&TokenSpec::user(account, world::UI_CLIENT, &scopes));
            app.ims
                .faults()
                .set_groups(account, world::ACME_HOME_ORG, &[world::ACME_ADMIN_GROUP]);
            let before = app.ims.faults().requests_under("/ims/organizations");
            app.put_refused(&techacct, world::ACME_DESIGN_ORG, 403, "forbidden")
                .await;
            assert_problem(app.delete_connection(&techacct).await, 403, "forbidden").await;
            assert_problem(app.history(&techacct, "").await, 403, "forbidden").await;
            assert_problem(app.list_orgs(&techacct).await, 403, "forbidden").await;
            let res = app.list_orgs_of(account, &techacct).await;
            assert_problem(res, 403, "forbidden").await;
            // Not a member either: a service token of a client that is not an integration reads
            // nothing.
            assert_problem(app.get_connection(&techacct).await, 403, "forbidden").await;
            assert_eq!(
                app.ims.faults().requests_under("/ims/organizations"),
                before,
                "{account}: refused before IMS is asked"
            );
        }
        let current = app.connection_json().await;
        assert_eq!(current["org_id"], world::ACME_CREATIVE_ORG, "nothing changed");
        assert_eq!(current["revision"], 1);
    });
}

#[tokio::test]
async fn if_match_with_a_stale_etag_returns_412_and_changes_nothing() {
    each_backend!(|app| {
        let admin = app.admin_token();
        app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
        app.put_connection(&admin, world::ACME_DESIGN_ORG).await;
        let res = app.switch(&admin, world::ACME_CREATIVE_ORG, "\"1\"").await;
        assert_problem(res, 412, "precondition-failed").await;
        let current: Value = app.get_connection(&admin).await.json().await.unwrap();
        assert_eq!(current["org_id"], world::ACME_DESIGN_ORG);
        assert_eq!(current["revision"], 2);

        let res = app.switch(&admin, world::ACME_CREATIVE_ORG, "\"2\"").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["etag"], "\"3\"");
    });
}

#[tokio::test]
async fn if_match_star_requires_an_existing_connection() {
    each_backend!(|app| {
        let admin = app.admin_token();
        let res = app.switch(&admin, world::ACME_CREATIVE_ORG, "*").await;
        assert_problem(res, 412, "precondition-failed").await;
        assert_problem(app.get_connection(&admin).await, 404, "no-connection").await;
    });
}

/// RFC 9110 on a first connection: the ETag a 404 `no-connection` carries is the one `If-Match`
/// names, and `If-None-Match: *` connects only a tenant that has no connection.
#[tokio::test]
async fn a_first_connection_is_conditional_on_the_404s_etag_or_if_none_match_star() {
    each_backend!(|app| {
        let admin = app.admin_token();
        let absent = app.get_connection(&admin).await;
        let etag = absent.headers()["etag"].to_str().unwrap().to_owned();
        assert_problem(absent, 404, "no-connection").await;
        let res = app.switch(&admin, world::ACME_CREATIVE_ORG, &etag).await;
        assert_eq!(res.status(), 201, "If-Match with the 404's ETag connects");
        let connected = res.headers()["etag"].to_str().unwrap().to_owned();

        // "Create only": refused now that a connection exists, with the current ETag.
        let create_only = |org| {
            let req = app.connection_request(Method::PUT, &admin);
            send(req.header("If-None-Match", "*").json(&json!({ "org_id": org })))
        };
        let res = create_only(world::ACME_DESIGN_ORG).await;
        assert_eq!(res.headers()["etag"].to_str().unwrap(), connected);
        assert_problem(res, 412, "precondition-failed").await;
        assert_eq!(app.connection_json().await["org_id"], world::ACME_CREATIVE_ORG);

        // Disconnected, the tenant takes a first connection again, once.
        assert_eq!(app.delete_connection(&admin).await.status(), 204);
        assert_eq!(create_only(world::ACME_DESIGN_ORG).await.status(), 201);
        assert_problem(
            create_only(world::ACME_CREATIVE_ORG).await,
            412,
            "precondition-failed",
        )
        .await;
        assert_eq!(app.connection_json().await["org_id"], world::ACME_DESIGN_ORG);
    });
}

#[tokio::test]
async fn disconnecting_returns_204_and_keeps_the_history() {
    each_backend!(|app| {
        let admin = app.admin_token();
        assert_problem(app.delete_connection(&admin).await, 404, "no-connection").await;
        app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
        assert_eq!(app.delete_connection(&admin).await.status(), 204);
        app.assert_no_connection().await;
        assert_problem(app.delete_connection(&admin).await, 404, "no-connection").await;
        let history = app.history_json().await;
        let entries = history["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["active"], false);
        assert_eq!(entries[0]["end_reason"], "disconnected");
        assert_eq!(entries[0]["ended_by"], world::ALICE_FEDERATED);
        // Reconnecting never reuses an ETag: a client holding "1" cannot match the new connection.
        let res = app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
        assert_eq!(res.headers()["etag"], "\"3\"");
    });
}

#[tokio::test]
async fn history_pages_newest_first_with_a_cursor() {
    each_backend!(|app| {
        let admin = app.admin_token();
        for org in [
            world::ACME_CREATIVE_ORG,
            world::ACME_DESIGN_ORG,
            world::ACME_CREATIVE_ORG,
            world::ACME_DESIGN_ORG,
        ] {
            assert!(app.put_connection(&admin, org).await.status().is_success());
        }
        // The revisions of a page's entries, in order.
        let revisions = |page: &Value| -> Vec<i64> {
            let entries = page["entries"].as_array().unwrap();
            entries.iter().map(|e| e["revision"].as_i64().unwrap()).collect()
        };
        let first: Value = app.history(&admin, "?limit=3").await.json().await.unwrap();
        assert_eq!(revisions(&first), [4, 3, 2]);
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let next_page = format!("?limit=3&cursor={cursor}");
        let second: Value = app.history(&admin, &next_page).await.json().await.unwrap();
        assert_eq!(revisions(&second), [1]);
        assert!(second["next_cursor"].is_null());
        assert_problem(app.history(&admin, "?limit=0").await, 400, "invalid-request").await;
        assert_problem(app.history(&admin, "?limit=101").await, 400, "invalid-request").await;
        assert_problem(app.history(&admin, "?cursor=abc").await, 400, "invalid-request").await;
        assert_problem(app.history(&admin, "?bogus=1").await, 400, "invalid-request").await;
        // Members read the connection, not its history.
        let bob = app.user_token(world::BOB_MEMBER, false);
        assert_problem(app.history(&bob, "").await, 403, "insufficient-scope").await;
    });
}

#[tokio::test]
async fn ims_down_during_a_switch_returns_503_and_changes_nothing() {
    let app = spawn_app(crate::common::db::Backend::Sqlite).await;
    let admin = app.admin_token();
    // Prime the admin check so the failure lands on the switch's own IMS calls.
    app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
    app.ims.faults().set_status(Some(503));
    let res = app.put_connection(&admin, world::ACME_DESIGN_ORG).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "ims-unavailable").await;
    app.ims.faults().set_status(None);
    let current = app.connection_json().await;
    assert_eq!(current["org_id"], world::ACME_CREATIVE_ORG);
    assert_eq!(current["revision"], 1);
}

#[tokio::test]
async fn ims_garbage_during_a_switch_returns_502_ims_error() {
    let app = spawn_app(crate::common::db::Backend::Sqlite).await;
    let admin = app.connected_by_admin().await;
    app.ims.faults().set_garbage(true);
    app.put_refused(&admin, world::ACME_DESIGN_ORG, 502, "ims-error")
        .await;
}

#[tokio::test]
async fn integration_reads_keep_working_while_ims_is_down() {
    let app = spawn_app(crate::common::db::Backend::Sqlite).await;
    app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
        .await;
    app.ims.faults().set_status(Some(503));
    let res = app.get_connection(&app.integration_token()).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_profile_that_does_not_say_whose_it_is_is_502_ims_error_and_changes_nothing() {
    each_backend!(|app| {
        let admin = app.connected_by_admin().await;
        // IMS answers 200 with a body that names no user: not a verdict on the entitlement.
        app.ims
            .faults()
            .set_profile_body(Some(serde_json::json!({"unexpected": "shape"})));
        app.put_refused(&admin, world::ACME_DESIGN_ORG, 502, "ims-error")
            .await;
        app.ims.faults().set_profile_body(None);
        let current = app.connection_json().await;
        assert_eq!(current["org_id"], world::ACME_CREATIVE_ORG);
        assert_eq!(current["revision"], 1);
        assert_eq!(app.history_entries().await.len(), 1);
    });
}

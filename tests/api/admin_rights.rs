//! Writes (switch, disconnect) judge the administrator by IMS as it answers now: one org listing
//! per write, none at all when `If-Match` is already stale.

use cc_connection::dev_ims::world;

use crate::common::db::Backend;
use crate::helpers::{TestApp, assert_problem, spawn_app};

const ORGS: &str = "/ims/organizations/v6";
const PROFILE: &str = "/ims/profile/v1";

fn ims_calls(app: &TestApp) -> (u64, u64) {
    let f = app.ims.faults();
    (f.requests(ORGS), f.requests(PROFILE))
}

#[tokio::test]
async fn an_administrator_removed_from_the_group_cannot_write_even_with_a_cached_org_list() {
    for backend in crate::common::db::backends() {
        let app = spawn_app(backend).await;
        let admin = app.connected_by_admin().await;
        // The history is judged by the cached org list: this caches it for the token.
        assert_eq!(app.history(&admin, "").await.status(), 200);
        // Alice leaves "AEM Administrators" (she stays a member of the home org).
        app.ims.faults().set_groups(
            world::ALICE_FEDERATED,
            world::ACME_HOME_ORG,
            &[world::ACME_USERS_GROUP],
        );
        app.put_refused(&admin, world::ACME_DESIGN_ORG, 403, "forbidden")
            .await;
        assert_problem(app.delete_connection(&admin).await, 403, "forbidden").await;
        let res = app.get_connection(&app.integration_token()).await;
        assert_eq!(res.headers()["etag"], "\"1\"", "{backend:?}: nothing changed");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["org_id"], world::ACME_CREATIVE_ORG);
        // Back in the group: the very same token may write again at once.
        app.ims.faults().set_groups(
            world::ALICE_FEDERATED,
            world::ACME_HOME_ORG,
            &[world::ACME_ADMIN_GROUP],
        );
        app.put_expecting(&admin, world::ACME_DESIGN_ORG, 200).await;
    }
}

#[tokio::test]
async fn a_switch_lists_the_callers_orgs_once_and_a_disconnect_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let (orgs, profiles) = ims_calls(&app);
    let res = app
        .put_connection(&app.admin_token(), world::ACME_CREATIVE_ORG)
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(ims_calls(&app), (orgs + 1, profiles + 1), "one switch");
    let res = app.delete_connection(&app.admin_token()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(ims_calls(&app), (orgs + 2, profiles + 1), "one disconnect");
}

#[tokio::test]
async fn a_stale_precondition_is_412_with_the_current_etag_once_ims_confirmed_the_administrator() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin_token();
    // No connection yet: `*` needs one, and "1" is not the tenant's ETag (a 404 carries "0").
    for tag in ["*", "\"1\""] {
        let before = ims_calls(&app);
        let res = app.switch(&admin, world::ACME_CREATIVE_ORG, tag).await;
        assert_eq!(res.headers()["etag"], "\"0\"", "{tag}");
        assert_problem(res, 412, "precondition-failed").await;
        // Who may act is decided first, by IMS as it answers now.
        assert_eq!(ims_calls(&app), (before.0 + 1, before.1 + 1), "{tag}");
    }
    app.put_expecting(&admin, world::ACME_CREATIVE_ORG, 201).await;
    let before = ims_calls(&app);
    let res = app.switch(&admin, world::ACME_DESIGN_ORG, "\"7\"").await;
    assert_eq!(res.headers()["etag"], "\"1\"");
    assert_problem(res, 412, "precondition-failed").await;
    let res = app.disconnect(&admin, "\"7\"").await;
    assert_eq!(res.headers()["etag"], "\"1\"");
    assert_problem(res, 412, "precondition-failed").await;
    assert_eq!(
        ims_calls(&app),
        (before.0 + 2, before.1 + 1),
        "one org listing each"
    );
    // The current one goes through.
    let res = app.switch(&admin, world::ACME_DESIGN_ORG, "\"1\"").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
}

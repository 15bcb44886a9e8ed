//! The org picker: every org the user has access to, and which have Creative Cloud for them.

use cc_connection::dev_ims::world;
use reqwest::Method;
use serde_json::Value;

use crate::common::db::Backend;
use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

fn entitled(body: &Value, org: &str) -> Option<bool> {
    body["orgs"].as_array()?.iter().find(|o| o["org_id"] == org)?["creative_cloud_entitled"].as_bool()
}

#[tokio::test]
async fn me_lists_every_org_with_its_creative_cloud_flag() {
    let app = spawn_app(Backend::Sqlite).await;
    let res = app.list_orgs(&app.admin_token()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], world::ALICE_FEDERATED);
    assert_eq!(entitled(&body, world::ACME_CREATIVE_ORG), Some(true));
    assert_eq!(entitled(&body, world::ACME_HOME_ORG), Some(false));
    assert_eq!(entitled(&body, world::NO_CC_ORG), Some(false));
    let first = &body["orgs"][0];
    assert!(first["org_name"].is_string() && first["org_type"].is_string());
}

#[tokio::test]
async fn the_personal_id_with_the_same_email_sees_its_own_entitlements() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.user_token(world::ALICE_PERSONAL, false);
    let body: Value = app.list_orgs(&token).await.json().await.unwrap();
    assert_eq!(body["user_id"], world::ALICE_PERSONAL);
    // Access to the org, but no Creative Cloud there, whatever serviceAccounts says.
    assert_eq!(entitled(&body, world::ACME_CREATIVE_ORG), Some(false));
}

#[tokio::test]
async fn own_id_works_and_another_users_id_is_403() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.admin_token();
    let own = app.list_orgs_of(world::ALICE_FEDERATED, &token).await;
    assert_eq!(own.status(), 200);
    let other = app.list_orgs_of(world::ALICE_PERSONAL, &token).await;
    assert_problem(other, 403, "forbidden").await;
    let malformed = app.list_orgs_of("not%20an%20id", &token).await;
    assert_problem(malformed, 400, "invalid-request").await;
}

#[tokio::test]
async fn service_tokens_have_no_orgs_to_list() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.integration_token();
    assert_problem(app.list_orgs(&token).await, 403, "forbidden").await;
}

#[tokio::test]
async fn repeated_listings_are_served_from_one_ims_lookup() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.admin_token();
    let before = app.ims.faults().requests("/ims/organizations/v6");
    let calls = (0..10).map(|_| app.request(Method::GET, "/users/me/orgs", Some(&token)).send());
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    assert_eq!(app.ims.faults().requests("/ims/organizations/v6") - before, 1);
}

#[tokio::test]
async fn ims_unavailable_for_a_listing_is_503_with_retry_after() {
    let app = spawn_app(Backend::Sqlite).await;
    app.ims.faults().set_status(Some(429));
    let res = app.list_orgs(&app.admin_token()).await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_problem(res, 503, "ims-unavailable").await;
}

#[tokio::test]
async fn a_failing_ims_call_is_retried_once_then_503() {
    let app = spawn_app(Backend::Sqlite).await;
    app.ims.faults().set_status(Some(500));
    let before = app.ims.faults().requests("/ims/organizations/v6");
    let res = app.list_orgs(&app.admin_token()).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "ims-unavailable").await;
    assert_eq!(
        app.ims.faults().requests("/ims/organizations/v6") - before,
        2,
        "one try and one retry, no more"
    );
    // IMS answers again: so does the listing.
    app.ims.faults().set_status(None);
    let res = app.list_orgs(&app.admin_token()).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_slow_ims_is_503_after_the_configured_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.ims_timeout_ms = 300).await;
    app.ims.faults().set_delay(std::time::Duration::from_secs(5));
    let started = std::time::Instant::now();
    let res = app.list_orgs(&app.admin_token()).await;
    let waited = started.elapsed();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "ims-unavailable").await;
    // Two tries of 300 ms and a short pause: far from the 5 s IMS takes.
    assert!(
        waited < std::time::Duration::from_secs(2),
        "answered after {waited:?}"
    );
}

/// The org names of the caller's org listing.
async fn org_names(app: &crate::helpers::TestApp, token: &str) -> Vec<String> {
    let listed: Value = app.list_orgs(token).await.json().await.unwrap();
    listed["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["org_name"].as_str().unwrap().to_owned())
        .collect()
}

/// Item 9 of the third hardening round: an org name with control characters (NUL, escape
/// sequences, bidirectional controls) from IMS is cleaned where it is read: the switch is never a
/// 500 (PostgreSQL refuses NUL in text) and nothing answered or stored holds them.
#[tokio::test]
async fn control_characters_in_org_names_from_ims_are_removed() {
    crate::each_backend!(|app| {
        let raw = "Acme\u{0} Creative\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}\tTeam";
        app.ims.faults().set_org_name(world::ACME_CREATIVE_ORG, raw);
        let unsafe_char = |s: &str| s.chars().any(|c| c.is_control() || c == '\u{202e}');
        let admin = app.admin_token();
        let names = org_names(&app, &admin).await;
        assert!(
            names.iter().any(|n| n == "Acme Creative[2J]0;pwned31m Team"),
            "{names:?}"
        );
        let res = app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
        assert_eq!(res.status(), 201, "{:?}: never a 500", app.backend);
        let body: Value = res.json().await.unwrap();
        assert!(!unsafe_char(body["org_name"].as_str().unwrap()), "{body}");
        let stored = app.connection_json().await;
        assert_eq!(stored["org_name"], body["org_name"]);
        let history = app.history_json().await;
        assert!(!unsafe_char(history["entries"][0]["org_name"].as_str().unwrap()));
    });
}

/// Item 8 of the fourth hardening round: invisible characters (Unicode format characters: zero-width
/// spaces and joiners, the byte order mark) and line and paragraph separators in an org name from IMS
/// are removed where it is read, so no two org names look alike while differing.
#[tokio::test]
async fn invisible_characters_in_org_names_from_ims_are_removed() {
    crate::each_backend!(|app| {
        let raw = "Ac\u{200b}me\u{200d} Cre\u{feff}ative\u{2060}\u{2028}Te\u{ad}am\u{2029}";
        app.ims.faults().set_org_name(world::ACME_CREATIVE_ORG, raw);
        let admin = app.admin_token();
        let names = org_names(&app, &admin).await;
        assert!(names.iter().any(|n| n == "Acme Creative Team "), "{names:?}");
        let res = app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["org_name"], "Acme Creative Team ", "{:?}", app.backend);
        assert_eq!(app.connection_json().await["org_name"], body["org_name"]);
    });
}

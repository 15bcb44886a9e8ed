//! What protects IMS: the per-user limit on IMS-bound requests (429 `rate-limited`) and the circuit
//! breaker of the IMS user calls (503 `ims-unavailable` at once while IMS keeps failing).

use std::time::Duration;

use cc_connection::dev_ims::{TokenSpec, world};
use reqwest::Response;
use serde_json::Value;

use crate::common::db::Backend;
use crate::helpers::{TestApp, assert_problem, metric, spawn_app_with};

/// IMS calls made with users' tokens so far.
fn user_calls(app: &TestApp) -> u64 {
    let f = app.ims.faults();
    f.requests("/ims/organizations/v6") + f.requests("/ims/profile/v1")
}

/// An app whose IMS circuit opens after two failures in a row, for `cool_down`.
async fn breaker_opening_at_two_failures(cool_down: Duration) -> TestApp {
    let breaker = (2, u64::try_from(cool_down.as_millis()).unwrap());
    spawn_app_with(Backend::Sqlite, |c| {
        (c.ims_breaker_failures, c.ims_breaker_cooldown_ms) = breaker
    })
    .await
}

/// The administrator's org list is refused: 503 `ims-unavailable`.
async fn orgs_refused_as_ims_unavailable(app: &TestApp) -> Value {
    assert_problem(app.list_orgs(&app.admin_token()).await, 503, "ims-unavailable").await
}

/// An app that lets each user make `per_minute` IMS-bound requests a minute, `burst` at once.
async fn with_ims_rate(per_minute: u32, burst: u32) -> TestApp {
    let rate = (per_minute, burst);
    spawn_app_with(Backend::Sqlite, |c| {
        (c.ims_rate_per_minute, c.ims_rate_burst) = rate
    })
    .await
}

fn retry_after(res: &Response) -> u64 {
    res.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_user_over_the_ims_rate_limit_gets_429_with_retry_after_and_nothing_changes() {
    let app = with_ims_rate(60, 3).await;
    let admin = app.connected_by_admin().await;
    app.put_expecting(&admin, world::ACME_DESIGN_ORG, 200).await;
    assert_eq!(app.list_orgs(&admin).await.status(), 200);

    // The burst is spent: a switch, a disconnect and a listing are refused before IMS is asked.
    let before = user_calls(&app);
    let res = app.put_connection(&admin, world::ACME_CREATIVE_ORG).await;
    assert_eq!(retry_after(&res), 1);
    assert_problem(res, 429, "rate-limited").await;
    // A fresh token of the same user shares the user's bucket.
    let res = app.delete_connection(&app.admin_token()).await;
    assert!(retry_after(&res) >= 1);
    assert_problem(res, 429, "rate-limited").await;
    let res = app.list_orgs(&admin).await;
    assert!(retry_after(&res) >= 1);
    assert_problem(res, 429, "rate-limited").await;
    assert_eq!(user_calls(&app), before, "a refused request asks IMS nothing");

    // Nothing changed. Reads that need no IMS call spend nothing: the integration's, and the
    // history read with the token whose org list the switches cached.
    let current = app.connection_json().await;
    assert_eq!(current["org_id"], world::ACME_DESIGN_ORG);
    assert_eq!(current["revision"], 2);
    let res = app.history(&admin, "").await;
    assert_eq!(res.status(), 200);
    let history: serde_json::Value = res.json().await.unwrap();
    assert_eq!(history["entries"].as_array().unwrap().len(), 2);

    // Another user has a bucket of their own. (That the user may go on after Retry-After, a
    // refusal having spent nothing, is unit-tested on a fake clock in `src/ratelimit.rs`.)
    let bob = app.user_token(world::BOB_MEMBER, false);
    assert_eq!(app.list_orgs(&bob).await.status(), 200);
}

#[tokio::test]
async fn the_default_limit_lets_a_person_work() {
    // The production default, not the test suite's: a person switching back and forth and opening
    // the org picker a dozen times in a row is never refused.
    let defaults = cc_connection::config::Config::defaults(cc_connection::config::Mode::Serve);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.ims_rate_per_minute = defaults.ims_rate_per_minute;
        c.ims_rate_burst = defaults.ims_rate_burst;
    })
    .await;
    let admin = app.admin_token();
    let orgs = [world::ACME_CREATIVE_ORG, world::ACME_DESIGN_ORG];
    for i in 0..12 {
        assert!(
            app.put_connection(&admin, orgs[i % 2])
                .await
                .status()
                .is_success()
        );
        assert_eq!(app.list_orgs(&admin).await.status(), 200);
    }
}

/// That the breaker is wired: IMS timing out opens it, it then answers 503 `ims-unavailable` with
/// `Retry-After` without asking IMS, and it closes once IMS answers again. Its timing (the time left
/// counting down as `Retry-After`, the one trial after the cool-down) is unit-tested on a paused
/// clock in `src/ims/breaker.rs`; here the cool-down is short.
#[tokio::test]
async fn a_slow_ims_opens_the_circuit_then_503_comes_at_once_and_it_closes_when_ims_is_back() {
    // Short, yet long enough for the two refused requests below on a busy machine (the margin the
    // failed-trial test below relies on too).
    let cool_down = Duration::from_millis(500);
    // The test suite's IMS timeout (1 s): shorter ones can fail the start's key download on a
    // busy machine.
    let app = breaker_opening_at_two_failures(cool_down).await;
    let opened_before = transitions_to(&app, "open").await;
    app.ims.faults().set_delay(Duration::from_secs(5));
    // Orgs and profile both time out (each after one retry): two failures open the circuit.
    let res = app.list_orgs(&app.admin_token()).await;
    // The circuit opened before this answer was sent.
    let opened = tokio::time::Instant::now();
    assert_problem(res, 503, "ims-unavailable").await;
    let calls = user_calls(&app);
    assert_eq!(calls, 4, "two calls, each tried twice");

    // Open: requests are refused without asking IMS, with the time left to wait (under a second).
    let res = app.list_orgs(&app.admin_token()).await;
    assert_eq!(retry_after(&res), 1);
    assert_problem(res, 503, "ims-unavailable").await;
    let res = app
        .put_connection(&app.admin_token(), world::ACME_CREATIVE_ORG)
        .await;
    assert_eq!(retry_after(&res), 1);
    assert_problem(res, 503, "ims-unavailable").await;
    assert_eq!(user_calls(&app), calls, "no IMS call while the circuit is open");
    assert!(transitions_to(&app, "open").await > opened_before);
    assert!(!app.state.ims.breaker().is_closed());

    // IMS answers again: after the cool-down the next request goes through and closes the circuit.
    app.ims.faults().set_delay(Duration::ZERO);
    tokio::time::sleep_until(opened + cool_down).await;
    assert_eq!(app.list_orgs(&app.admin_token()).await.status(), 200);
    assert!(app.state.ims.breaker().is_closed());
    app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
        .await;
}

#[tokio::test]
async fn a_failed_trial_opens_the_circuit_again_after_one_call() {
    let app = breaker_opening_at_two_failures(Duration::from_millis(500)).await;
    app.ims.faults().set_status(Some(500));
    orgs_refused_as_ims_unavailable(&app).await;
    let calls = user_calls(&app);
    orgs_refused_as_ims_unavailable(&app).await;
    assert_eq!(user_calls(&app), calls, "open");

    // After the cool-down one trial call goes to IMS (tried twice); it fails and the circuit opens
    // again: the other call of that request, waiting on the trial, never reaches IMS.
    tokio::time::sleep(Duration::from_millis(600)).await;
    orgs_refused_as_ims_unavailable(&app).await;
    assert_eq!(user_calls(&app), calls + 2, "one trial call, tried twice");
    orgs_refused_as_ims_unavailable(&app).await;
    assert_eq!(user_calls(&app), calls + 2, "open again");
}

#[tokio::test]
async fn tokens_ims_rejects_do_not_open_the_circuit() {
    let app = breaker_opening_at_two_failures(Duration::from_secs(60)).await;
    // IMS answers 401 (as for a token it revoked): a bad token, not a failing IMS.
    app.ims.faults().set_status(Some(401));
    for _ in 0..5 {
        assert_problem(app.list_orgs(&app.admin_token()).await, 401, "invalid-token").await;
    }
    app.ims.faults().set_status(None);
    let token = app.ims.mint(&TokenSpec::user(
        world::BOB_MEMBER,
        world::UI_CLIENT,
        world::USER_SCOPES,
    ));
    assert_eq!(
        app.list_orgs(&token).await.status(),
        200,
        "the circuit stayed closed"
    );
}

/// `ccc_ims_breaker_transitions_total{to=...}` as `/metrics` shows it (process-wide: other tests'
/// breakers count too, so only increases are meaningful).
async fn transitions_to(app: &TestApp, to: &str) -> f64 {
    let series = format!("ccc_ims_breaker_transitions_total{{to=\"{to}\"}}");
    metric(&app.metrics().await, &series).unwrap_or(0.0)
}

/// Item 2 of the third hardening round: a token IMS refuses (a user who signed out) costs IMS one
/// call, not one per read.
#[tokio::test]
async fn a_token_ims_refused_is_refused_from_memory_for_a_while() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let bob = app.user_token(world::BOB_MEMBER, false);
    app.ims.faults().set_status(Some(401));
    let before = app.ims.faults().requests("/ims/organizations/v6");
    for _ in 0..50 {
        assert_problem(app.get_connection(&bob).await, 401, "invalid-token").await;
    }
    let calls = app.ims.faults().requests("/ims/organizations/v6") - before;
    assert_eq!(calls, 1, "one IMS call for 50 reads");
    // Not a failing IMS: another token of the same user is asked about at once.
    app.ims.faults().set_status(None);
    let again = app.user_token(world::BOB_MEMBER, false);
    assert_problem(app.get_connection(&again).await, 404, "no-connection").await;
}

/// Item 2 of the third hardening round: a read that has to ask IMS (a member's, an administrator's
/// history) spends the user's IMS budget like a switch; one answered from the cache does not.
#[tokio::test]
async fn member_reads_and_the_history_spend_the_users_ims_budget() {
    let app = with_ims_rate(1, 3).await;
    // Each fresh token is a new org lookup in IMS: three spend Bob's burst.
    let cached = app.user_token(world::BOB_MEMBER, false);
    assert_problem(app.get_connection(&cached).await, 404, "no-connection").await;
    for _ in 0..2 {
        let res = app
            .get_connection(&app.user_token(world::BOB_MEMBER, false))
            .await;
        assert_problem(res, 404, "no-connection").await;
    }
    let before = user_calls(&app);
    let res = app
        .get_connection(&app.user_token(world::BOB_MEMBER, false))
        .await;
    assert!(retry_after(&res) >= 1);
    assert_problem(res, 429, "rate-limited").await;
    assert_eq!(user_calls(&app), before, "refused before IMS is asked");
    // The token whose org list is cached reads on: no IMS call, nothing spent.
    for _ in 0..5 {
        assert_problem(app.get_connection(&cached).await, 404, "no-connection").await;
    }
    assert_eq!(user_calls(&app), before);

    // An administrator's history, the same.
    for _ in 0..3 {
        assert_eq!(app.history(&app.admin_token(), "").await.status(), 200);
    }
    let res = app.history(&app.admin_token(), "").await;
    assert_problem(res, 429, "rate-limited").await;
}

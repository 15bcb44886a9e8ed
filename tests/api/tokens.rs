//! Token rules of `docs/ims.md`: each refusal is a 401 `invalid-token` with `WWW-Authenticate`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cc_connection::dev_ims::{JwksAnswer, TokenSpec, world};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::db::Backend;
use crate::helpers::{TENANT, TestApp, assert_problem, metric, send, spawn_app, spawn_app_with};

fn header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": kid, "x5u": format!("{kid}.cer"), "itt": "at"})
}

fn claims(created_at: Value, expires_in: Value) -> Value {
    json!({
        "id": "1", "type": "access_token", "client_id": world::INTEGRATION_CLIENT, "as": world::REGION,
        "scope": world::READ_SCOPE, "created_at": created_at, "expires_in": expires_in,
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn expect_invalid(app: &TestApp, token: &str) {
    let res = app.get_connection(token).await;
    assert_eq!(
        res.headers().get("www-authenticate").map(|v| v.to_str().unwrap()),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_problem(res, 401, "invalid-token").await;
}

async fn connected_app() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    app.put_expecting(&app.admin_token(), world::ACME_CREATIVE_ORG, 201)
        .await;
    app
}

/// A token signed with the certificate's key is refused (401), the certificate downloaded
/// `downloads` times in all.
async fn cert_signed_token_refused(app: &TestApp, downloads: u64) {
    expect_invalid(app, &app.ims.mint(&cert_signed_integration_spec())).await;
    assert_eq!(app.ims.faults().requests("/keys/dev-key-cert-1.cer"), downloads);
}

/// An integration's service token signed with the certificate's key (its header names the
/// certificate by `x5u`).
fn cert_signed_integration_spec() -> TokenSpec {
    TokenSpec {
        use_cert_key: true,
        ..TokenSpec::service(world::INTEGRATION_CLIENT, &[world::READ_SCOPE])
    }
}

#[tokio::test]
async fn a_minted_integration_token_is_accepted() {
    let app = connected_app().await;
    let token = app.ims.sign_raw(
        &header("dev-key-at-1"),
        &claims(json!(now_ms().to_string()), json!("86400000")),
    );
    assert_eq!(app.get_connection(&token).await.status(), 200);
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401() {
    let app = connected_app().await;
    let path = TestApp::connection_path(TENANT);
    let res = app.call(Method::GET, &path, None).await;
    assert_problem(res, 401, "invalid-token").await;
    let good = app.integration_token();
    for value in [
        "Basic abc",
        "Bearer",
        "Bearer ",
        &format!("Token {good}"),
        &format!("Bearer {good} extra"),
    ] {
        let res = send(app.client.get(app.url(&path)).header("Authorization", value)).await;
        assert_problem(res, 401, "invalid-token").await;
    }
    let res = send(
        app.client
            .get(app.url(&path))
            .header("Authorization", format!("Bearer {good}"))
            .header("Authorization", format!("Bearer {good}")),
    )
    .await;
    assert_problem(res, 401, "invalid-token").await;
}

#[tokio::test]
async fn alg_none_and_hs256_and_other_algorithms_are_refused() {
    let app = connected_app().await;
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "dev-key-at-1"})),
        b64(&c)
    );
    expect_invalid(&app, &none).await;
    // HS256 keyed with the RSA public key (the classic confusion attack).
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": "dev-key-at-1"});
    let signing_input = format!("{}.{}", b64(&hs_header), b64(&c));
    let key = jsonwebtoken::EncodingKey::from_secret(app.ims.public_key_pem().as_bytes());
    let sig =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    expect_invalid(&app, &format!("{signing_input}.{sig}")).await;
    // RS512 header over an RS256 signature, and PS256.
    for alg in ["RS512", "PS256", "ES256"] {
        let t = app.ims.sign_raw(&json!({"alg": alg, "kid": "dev-key-at-1"}), &c);
        expect_invalid(&app, &t).await;
    }
}

#[tokio::test]
async fn tampered_payload_and_stripped_signature_are_refused() {
    let app = connected_app().await;
    let token = app.integration_token();
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["client_id"] = json!(world::LIBRARIES_CLIENT);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    expect_invalid(&app, &forged).await;
    expect_invalid(&app, &format!("{}.{}.", parts[0], parts[1])).await;
    expect_invalid(&app, &format!("{}.{}", parts[0], parts[1])).await;
}

#[tokio::test]
async fn expiry_comes_from_created_at_plus_expires_in() {
    let app = connected_app().await;
    let now = now_ms();
    let h = header("dev-key-at-1");
    // Expired two hours ago.
    expect_invalid(
        &app,
        &app.ims.sign_raw(
            &h,
            &claims(json!((now - 26 * 3_600_000).to_string()), json!("86400000")),
        ),
    )
    .await;
    // Created in the future.
    expect_invalid(
        &app,
        &app.ims.sign_raw(
            &h,
            &claims(json!((now + 3_600_000).to_string()), json!("86400000")),
        ),
    )
    .await;
    // Absurd values.
    for (c, e) in [
        (json!("abc"), json!("86400000")),
        (json!(now.to_string()), json!("-5")),
        (json!(now.to_string()), json!("99999999999999999999999")),
        (json!(now.to_string()), json!("0")),
        (json!(now.to_string()), json!(null)),
        (json!(now.to_string()), json!(["1"])),
    ] {
        expect_invalid(&app, &app.ims.sign_raw(&h, &claims(c, e))).await;
    }
}

#[tokio::test]
async fn wrong_type_region_or_client_is_refused() {
    let app = connected_app().await;
    for spec in [
        TokenSpec {
            token_type: "refresh_token".into(),
            ..TokenSpec::service(world::INTEGRATION_CLIENT, &[world::READ_SCOPE])
        },
        TokenSpec {
            region: "ims-na1-stg1".into(),
            ..TokenSpec::service(world::INTEGRATION_CLIENT, &[world::READ_SCOPE])
        },
        TokenSpec::service("some-other-client", &[world::READ_SCOPE]),
    ] {
        expect_invalid(&app, &app.ims.mint(&spec)).await;
    }
    // Missing claims.
    let h = header("dev-key-at-1");
    let mut c = claims(json!(now_ms().to_string()), json!("86400000"));
    c.as_object_mut().unwrap().remove("type");
    expect_invalid(&app, &app.ims.sign_raw(&h, &c)).await;
    let mut c = claims(json!(now_ms().to_string()), json!("86400000"));
    c["client_id"] = json!(42);
    expect_invalid(&app, &app.ims.sign_raw(&h, &c)).await;
}

#[tokio::test]
async fn unknown_or_hostile_kids_are_refused() {
    let app = connected_app().await;
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    for kid in ["no-such-key", "../../etc/passwd", &"k".repeat(10_000)] {
        expect_invalid(&app, &app.ims.sign_raw(&json!({"alg": "RS256", "kid": kid}), &c)).await;
    }
}

#[tokio::test]
async fn a_certificate_key_is_used_from_the_configured_base_only() {
    let app = connected_app().await;
    let spec = cert_signed_integration_spec();
    let token = app.ims.mint(&spec);
    assert_eq!(app.get_connection(&token).await.status(), 200);
    assert_eq!(app.ims.faults().requests("/keys/dev-key-cert-1.cer"), 1);

    // An x5u naming a URL is never fetched.
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    let evil =
        json!({"alg": "RS256", "kid": "other", "x5u": format!("{}/keys/dev-key-cert-1.cer", app.ims.url())});
    expect_invalid(&app, &app.ims.sign_raw_with_cert_key(&evil, &c)).await;
    let jku = json!({"alg": "RS256", "kid": "other", "jku": format!("{}/ims/keys", app.ims.url())});
    expect_invalid(&app, &app.ims.sign_raw_with_cert_key(&jku, &c)).await;
    assert_eq!(app.ims.faults().requests("/keys/dev-key-cert-1.cer"), 1);
}

#[tokio::test]
async fn without_a_certificate_base_the_certificate_key_is_unknown() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.ims_cert_url = None).await;
    cert_signed_token_refused(&app, 0).await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval() {
    let app = connected_app().await;
    let before = app.ims.faults().requests("/ims/keys");
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    for i in 0..20 {
        let t = app
            .ims
            .sign_raw(&json!({"alg": "RS256", "kid": format!("forged-{i}")}), &c);
        expect_invalid(&app, &t).await;
    }
    assert!(app.ims.faults().requests("/ims/keys") - before <= 1);
}

#[tokio::test]
async fn oversized_tokens_are_refused() {
    let app = connected_app().await;
    let mut c = claims(json!(now_ms().to_string()), json!("86400000"));
    c["padding"] = json!("x".repeat(9_000));
    expect_invalid(&app, &app.ims.sign_raw(&header("dev-key-at-1"), &c)).await;
}

#[tokio::test]
async fn a_cached_token_stops_working_once_ims_withdraws_its_key() {
    let app = connected_app().await;
    let token = app.integration_token();
    assert_eq!(app.get_connection(&token).await.status(), 200);
    assert_eq!(
        app.get_connection(&token).await.status(),
        200,
        "served from the verified-token cache"
    );
    app.ims.faults().set_withhold_keys(true);
    app.state.verifier.keys().refresh().await.unwrap();
    expect_invalid(&app, &token).await;
    // The key comes back: the token verifies again.
    app.ims.faults().set_withhold_keys(false);
    app.state.verifier.keys().refresh().await.unwrap();
    assert_eq!(app.get_connection(&token).await.status(), 200);
}

#[tokio::test]
async fn oversized_authorization_and_headers_are_refused_cleanly() {
    let app = connected_app().await;
    let path = TestApp::connection_path(TENANT);
    let huge = format!("Bearer {}", "a".repeat(100_000));
    let res = send(app.client.get(app.url(&path)).header("Authorization", huge)).await;
    assert_problem(res, 401, "invalid-token").await;
    // Many large unrelated headers: answered (served or refused), never a 5xx or a dropped worker.
    let mut req = app
        .client
        .get(app.url(&path))
        .bearer_auth(app.integration_token());
    for i in 0..50 {
        req = req.header(format!("x-junk-{i}"), "j".repeat(1_000));
    }
    let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(431);
    assert!(status == 200 || status == 431 || status == 400, "{status}");
    assert_eq!(
        app.get_connection(&app.integration_token()).await.status(),
        200,
        "still serving"
    );
}

#[tokio::test]
async fn a_jwks_with_no_usable_key_keeps_the_keys_in_hand_and_is_counted() {
    let app = connected_app().await;
    let counter = r#"ccc_jwks_refreshes_total{outcome="no_usable_key"}"#;
    // No other test makes a JWKS without a usable key: this series is this test's alone.
    let before = metric(&app.metrics().await, counter).unwrap_or(0.0);
    app.ims.faults().set_jwks(JwksAnswer::NoUsableKey);
    app.state.verifier.keys().refresh().await.unwrap();
    // A token never seen before (so not from the verified-token cache) still verifies.
    assert_eq!(app.get_connection(&app.integration_token()).await.status(), 200);
    assert!(metric(&app.metrics().await, counter).unwrap_or(0.0) > before);
}

#[tokio::test]
async fn a_kid_republished_with_another_key_evicts_cached_tokens_of_the_old_key() {
    let app = connected_app().await;
    let token = app.integration_token();
    assert_eq!(app.get_connection(&token).await.status(), 200);
    assert_eq!(app.get_connection(&token).await.status(), 200, "cached");
    app.ims.faults().set_jwks(JwksAnswer::Republished);
    app.state.verifier.keys().refresh().await.unwrap();
    expect_invalid(&app, &token).await;
}

#[tokio::test]
async fn a_kid_withdrawn_from_the_jwks_is_refused_even_while_its_certificate_is_downloadable() {
    let app = connected_app().await;
    let token = app.integration_token();
    assert_eq!(app.get_connection(&token).await.status(), 200);
    // IMS rotates the key out of the JWKS; a stale copy of its certificate is still served.
    app.ims.faults().set_jwks(JwksAnswer::RotatedCertificateKept);
    app.state.verifier.keys().refresh().await.unwrap();
    expect_invalid(&app, &token).await;
    expect_invalid(&app, &app.integration_token()).await;
    // Nor through another kid naming the withdrawn key's certificate.
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    let other = json!({"alg": "RS256", "kid": "other", "x5u": "dev-key-at-1.cer"});
    expect_invalid(&app, &app.ims.sign_raw(&other, &c)).await;
    assert_eq!(app.ims.faults().requests("/keys/dev-key-at-1.cer"), 0);
    // The certificate-only key, never in the JWKS, still verifies.
    let spec = cert_signed_integration_spec();
    assert_eq!(app.get_connection(&app.ims.mint(&spec)).await.status(), 200);
}

#[tokio::test]
async fn a_certificate_name_not_found_is_not_downloaded_again_for_a_while() {
    let app = connected_app().await;
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    // A name of the development IMS's form that it does not serve.
    let header = json!({"alg": "RS256", "kid": "dev-key-gone", "x5u": "dev-key-gone.cer"});
    let token = app.ims.sign_raw_with_cert_key(&header, &c);
    expect_invalid(&app, &token).await;
    // Asked again at once: answered from memory. Forgotten, it would be downloaded again once the
    // one-per-second slot frees (within the request's wait) or deferred (503), not refused. How
    // long it is remembered (MISSING_CERT_TTL) is unit-tested on a paused clock in
    // src/auth/keys.rs.
    let token = app
        .ims
        .sign_raw_with_cert_key(&header, &claims(json!(now_ms().to_string()), json!("86400001")));
    expect_invalid(&app, &token).await;
    assert_eq!(app.ims.faults().requests("/keys/dev-key-gone.cer"), 1);
}

#[tokio::test]
async fn a_flood_of_random_certificate_names_does_not_turn_a_real_certificate_token_into_401() {
    let app = connected_app().await;
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    // Unauthenticated tokens, each naming a new certificate: they take the download slot.
    let flood: Vec<_> = (0..50)
        .map(|i| {
            let name = format!("flood-{i}-{}", uuid::Uuid::new_v4().simple());
            let t = app.ims.sign_raw(
                &json!({"alg": "RS256", "kid": name, "x5u": format!("{name}.cer")}),
                &c,
            );
            let req = app
                .client
                .get(app.url(&TestApp::connection_path(TENANT)))
                .bearer_auth(t);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut flood_statuses = Vec::new();
    for t in flood {
        flood_statuses.push(t.await.unwrap());
    }
    assert!(
        flood_statuses.iter().all(|s| *s == 401 || *s == 503),
        "{flood_statuses:?}"
    );
    // The slot was just taken: a real certificate-keyed token is told to retry, never refused.
    let spec = cert_signed_integration_spec();
    let token = app.ims.mint(&spec);
    let mut served = false;
    for _ in 0..5 {
        let res = app.get_connection(&token).await;
        if res.status() == 200 {
            served = true;
            break;
        }
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert_problem(res, 503, "ims-unavailable").await;
        tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    }
    assert!(served, "the real token is served once the slot frees");
    // At most one download per second, whatever the flood.
    assert!(app.ims.faults().requests_under("/keys/") <= 8);
}

/// A certificate IMS serves past its `notAfter` is not used. That one in use stops verifying the
/// moment its `notAfter` passes, for cached tokens too, is unit-tested on a wall clock the test
/// sets in `src/auth/keys.rs`.
#[tokio::test]
async fn a_certificate_served_past_its_not_after_is_refused() {
    let app = connected_app().await;
    let expired = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    app.ims.faults().set_certificate_expiry(Some(expired));
    cert_signed_token_refused(&app, 1).await;
}

#[tokio::test]
async fn concurrent_first_uses_of_a_certificate_share_one_download() {
    let app = connected_app().await;
    let spec = cert_signed_integration_spec();
    // Distinct tokens (so the verified-token cache does not answer), one certificate.
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let token = app.ims.mint(&TokenSpec {
                expires_in_ms: 86_400_000 - i,
                ..spec.clone()
            });
            let req = app
                .client
                .get(app.url(&TestApp::connection_path(TENANT)))
                .bearer_auth(token);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200, "every waiter gets the one download's key");
    }
    assert_eq!(app.ims.faults().requests("/keys/dev-key-cert-1.cer"), 1);
}

/// Item 4 of the third hardening round: with the JWKS loaded, a certificate base that cannot be
/// reached says "retry" (503 with `Retry-After`), not "your token is bad" (401).
#[tokio::test]
async fn a_certificate_base_that_is_down_answers_503_with_retry_after_not_401() {
    // A port nothing listens on: every download is refused at connect.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}/keys/", dead.local_addr().unwrap().port());
    drop(dead);
    let app = spawn_app_with(Backend::Sqlite, |c| c.ims_cert_url = Some(base.parse().unwrap())).await;
    assert!(app.state.verifier.keys().is_loaded(), "the JWKS is loaded");
    let spec = cert_signed_integration_spec();
    let res = app.get_connection(&app.ims.mint(&spec)).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(!res.headers().contains_key("www-authenticate"));
    assert_problem(res, 503, "ims-unavailable").await;
    // A JWKS-keyed token is served meanwhile.
    assert_eq!(app.get_connection(&app.integration_token()).await.status(), 404);
}

/// How a flood names its made-up certificates.
#[derive(Clone, Copy)]
enum FloodNames {
    /// A new name for every request.
    EachNew,
    /// One name shared by every flooder for 300 ms, then the next (each reused many times).
    Reused,
}

/// While tokens naming made-up certificates (of the right form) flood in, a genuine
/// certificate-keyed token is served within seconds, and its certificate downloaded once.
async fn a_genuine_certificate_is_served_within_seconds_of_a_flood(names: FloodNames) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let app = connected_app().await;
    let stop = Arc::new(AtomicBool::new(false));
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    let flood_started = Instant::now();
    let flooders: Vec<_> = (0..16)
        .map(|_| {
            let (stop, client, url, ims, c) = (
                stop.clone(),
                app.client.clone(),
                app.url(&TestApp::connection_path(TENANT)),
                app.ims.clone(),
                c.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let suffix = match names {
                        FloodNames::EachNew => uuid::Uuid::new_v4().simple().to_string(),
                        FloodNames::Reused => (flood_started.elapsed().as_millis() / 300).to_string(),
                    };
                    let name = format!("{}flood-{suffix}", cc_connection::dev_ims::CERT_NAME_PREFIX);
                    let header = json!({"alg": "RS256", "kid": name, "x5u": format!("{name}.cer")});
                    let token = ims.sign_raw(&header, &c);
                    let res = client.get(&url).bearer_auth(token).send().await.unwrap();
                    statuses.push(res.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let flood_prefix = format!("/keys/{}flood-", cc_connection::dev_ims::CERT_NAME_PREFIX);
    crate::helpers::wait_for(
        "the flood to reach the certificate base",
        Duration::from_secs(10),
        || async { app.ims.faults().requests_under(&flood_prefix) >= 2 },
    )
    .await;

    let spec = cert_signed_integration_spec();
    let token = app.ims.mint(&spec);
    let started = Instant::now();
    loop {
        let res = app.get_connection(&token).await;
        if res.status() == 200 {
            break;
        }
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert_problem(res, 503, "ims-unavailable").await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the genuine certificate is still not downloaded while the flood runs"
        );
        // What a client does: retry after the time it was given.
        tokio::time::sleep(Duration::from_secs(retry)).await;
    }
    let waited = started.elapsed();
    let flood_downloads = app.ims.faults().requests_under(&flood_prefix);
    eprintln!("genuine certificate served after {waited:?}; {flood_downloads} flood names downloaded");
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let statuses = f.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    }
    assert!(
        waited <= Duration::from_secs(5),
        "the genuine certificate waited {waited:?} ({flood_downloads} flood names downloaded)"
    );
    assert_eq!(app.ims.faults().requests("/keys/dev-key-cert-1.cer"), 1);
}

/// Item 1 of the third hardening round: made-up names, each new.
#[tokio::test]
async fn a_flood_of_made_up_certificate_names_delays_a_genuine_certificate_by_seconds_at_most() {
    a_genuine_certificate_is_served_within_seconds_of_a_flood(FloodNames::EachNew).await;
}

/// Item 4 of the fourth hardening round: made-up names, each reused by the whole flood for 300 ms
/// (hundreds of requests each) before the next: they outranked a genuine name asked for once a
/// second, which got 503 for as long as the flood ran.
#[tokio::test]
async fn a_flood_reusing_each_made_up_certificate_name_delays_a_genuine_certificate_by_seconds_at_most() {
    a_genuine_certificate_is_served_within_seconds_of_a_flood(FloodNames::Reused).await;
}

/// Item 1: names not of the configured IMS's form are refused without a download: another prefix,
/// or an `x5u` that is not the token's own `kid` plus `.cer`.
#[tokio::test]
async fn certificate_names_not_of_the_imss_form_are_never_downloaded() {
    let app = connected_app().await;
    let c = claims(json!(now_ms().to_string()), json!("86400000"));
    for (kid, x5u) in [
        ("made-up-1", "made-up-1.cer"),
        ("dev-key-a", "dev-key-b.cer"),
        ("dev-key-cert-2", "dev-key-cert-1.cer"),
    ] {
        let token = app
            .ims
            .sign_raw_with_cert_key(&json!({"alg": "RS256", "kid": kid, "x5u": x5u}), &c);
        expect_invalid(&app, &token).await;
    }
    assert_eq!(app.ims.faults().requests_under("/keys/"), 0);
}

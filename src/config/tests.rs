//! Tests: the configuration's loading and validation, from the defaults and the environment.

use super::*;
use figment::providers::Serialized;

fn with(mode: Mode, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut fig = Figment::new().merge(Serialized::defaults(Config::defaults(mode)));
    for (k, v) in pairs {
        fig = fig.merge(Serialized::default(k, v));
    }
    Config::from_figment(mode, fig)
}

/// The development mode with a client (its defaults name none: `start-dev` adds them).
fn dev_with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("client_ids", "ui")];
    all.extend_from_slice(pairs);
    with(Mode::Dev, &all)
}

#[test]
fn serve_requires_database_url_and_client_ids() {
    let err = with(Mode::Serve, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DATABASE_URL is required (see README, Configuration)"
    );
    let err = with(Mode::Serve, &[("database_url", "postgres://db/ccc")]).unwrap_err();
    assert!(err.to_string().starts_with("CCC_CLIENT_IDS is required"));
    let ok = with(
        Mode::Serve,
        &[("database_url", "postgres://db/ccc"), ("client_ids", "a, b,,c")],
    )
    .unwrap();
    assert_eq!(ok.client_ids, ["a", "b", "c"]);
    assert_eq!(ok.ims_region.as_deref(), Some("ims-na1"));
    assert_eq!(ok.log_format, LogFormat::Json);
}

#[test]
fn ims_url_must_be_https_unless_loopback() {
    let base = [("database_url", "sqlite::memory:"), ("client_ids", "a")];
    for (url, ok) in [
        ("https://ims-na1.adobelogin.com", true),
        ("http://127.0.0.1:9000", true),
        ("http://localhost:9000", true),
        ("http://ims.example.com", false),
        ("ftp://127.0.0.1", false),
        ("not a url", false),
        ("", false),
    ] {
        let mut pairs = base.to_vec();
        pairs.push(("ims_url", url));
        assert_eq!(with(Mode::Serve, &pairs).is_ok(), ok, "{url}");
    }
    // Unset in development: the built-in development IMS.
    assert_eq!(dev_with(&[]).unwrap().ims_url, ImsEndpoint::Dev);
}

#[test]
fn ops_listen_is_optional_and_needs_its_own_port() {
    let c = dev_with(&[("ops_listen", "")]).unwrap();
    assert_eq!(c.ops_listen, None);
    let c = dev_with(&[("ops_listen", "127.0.0.1:9090")]).unwrap();
    assert_eq!(c.ops_listen, Some(([127, 0, 0, 1], 9090).into()));
    assert!(dev_with(&[("ops_listen", "127.0.0.1:8080")]).is_err());
    assert!(dev_with(&[("ops_listen", "not an address")]).is_err());
}

#[test]
fn db_connect_timeout_is_taken_to_the_millisecond_and_never_zero() {
    let with_timeout = |ms: u64| {
        let fig = Figment::new()
            .merge(Serialized::defaults(Config::defaults(Mode::Dev)))
            .merge(Serialized::default("client_ids", "ui"))
            .merge(Serialized::default("db_connect_timeout_ms", ms));
        Config::from_figment(Mode::Dev, fig)
    };
    let c = with_timeout(1500).unwrap();
    assert_eq!(c.db_connect_timeout(), Duration::from_millis(1500));
    assert!(with_timeout(0).is_err());
}

#[test]
fn the_certificate_name_prefix_follows_the_region_unless_set() {
    let base = [("database_url", "sqlite::memory:"), ("client_ids", "a")];
    let c = with(Mode::Serve, &base).unwrap();
    assert_eq!(c.cert_name_prefix().as_deref(), Some("ims_na1-key-"));
    let mut stage = base.to_vec();
    stage.push(("ims_region", "ims-na1-stg1"));
    let c = with(Mode::Serve, &stage).unwrap();
    assert_eq!(c.cert_name_prefix().as_deref(), Some("ims_na1-stg1-key-"));
    stage.push(("ims_cert_name_prefix", "custom-"));
    let c = with(Mode::Serve, &stage).unwrap();
    assert_eq!(c.cert_name_prefix().as_deref(), Some("custom-"));
}

#[test]
fn provisioning_is_off_unless_clients_are_named_and_they_are_accepted() {
    let base = [("database_url", "sqlite::memory:"), ("client_ids", "ui")];
    let c = with(Mode::Serve, &base).unwrap();
    assert!(c.provisioning_client_ids.is_empty());
    assert_eq!(c.provisioning_scope, "aem_assets.cc_connection.provision");
    let mut named = base.to_vec();
    named.push(("provisioning_client_ids", "aem-provisioning, ui"));
    let c = with(Mode::Serve, &named).unwrap();
    assert_eq!(c.provisioning_client_ids, ["aem-provisioning", "ui"]);
    assert_eq!(c.accepted_client_ids(), ["ui", "aem-provisioning"]);
}

#[test]
fn empty_region_means_not_checked() {
    let c = with(
        Mode::Serve,
        &[
            ("database_url", "sqlite::memory:"),
            ("client_ids", "a"),
            ("ims_region", ""),
        ],
    )
    .unwrap();
    assert_eq!(c.ims_region, None);
}

#[test]
fn webhook_settings_parse_and_a_lease_must_outlast_two_attempts() {
    let key = crate::webhook::WebhookKey::generate().to_base64();
    let c = dev_with(&[("webhook_key", &key), ("webhook_retry_schedule_ms", "50, 60,70")]).unwrap();
    assert_eq!(c.webhook_key.map(|k| k.to_base64()), Some(key));
    assert_eq!(c.webhook_retry_schedule_ms, [50, 60, 70]);
    assert_eq!(c.webhook_max_endpoints, 10);
    assert!(dev_with(&[]).unwrap().webhook_key.is_none());
    assert!(dev_with(&[("webhook_key", "c2hvcnQ=")]).is_err(), "32 bytes");
    assert!(
        dev_with(&[("webhook_lease_ms", "15000")]).is_err(),
        "under 2 x 10 s + 1 s"
    );
}

//! The development IMS: a real HTTP server speaking the IMS formats of `docs/ims.md` (`/ims/keys`,
//! `/ims/organizations/v6`, `/ims/profile/v1`, certificates under `/keys/`) from a small fixed
//! world ([`world`]), that also mints tokens. `start-dev` and the tests reach it over HTTP exactly
//! as the service reaches Adobe IMS; `serve` never starts it.

mod keys;
mod server;
pub mod world;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::{Value, json};

pub use keys::DevKey;

/// Kid of the key listed in the JWKS.
pub const JWKS_KID: &str = "dev-key-at-1";
/// Kid of the key published only as a certificate (`x5u` fallback).
pub const CERT_KID: &str = "dev-key-cert-1";

/// The start of every certificate name the development IMS serves (its kids' form).
pub const CERT_NAME_PREFIX: &str = "dev-key-";

/// Kid of the key that replaces [`JWKS_KID`] when the development IMS rotates it.
pub const SUCCESSOR_KID: &str = "dev-key-at-2";

/// What `/ims/keys` publishes (fault injection for key rotation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum JwksAnswer {
    /// The access-token key.
    #[default]
    Current = 0,
    /// The access-token key withdrawn everywhere (JWKS and certificate); its successor published.
    Rotated = 1,
    /// The access-token key withdrawn from the JWKS only: its certificate is still downloadable.
    RotatedCertificateKept = 2,
    /// The access-token key's kid republished with another key (the successor's).
    Republished = 3,
    /// A JWKS with no usable key.
    NoUsableKey = 4,
}

impl JwksAnswer {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Rotated,
            2 => Self::RotatedCertificateKept,
            3 => Self::Republished,
            4 => Self::NoUsableKey,
            _ => Self::Current,
        }
    }
}

/// A running development IMS.
pub struct DevIms {
    url: String,
    handle: ServerHandle,
    faults: std::sync::Arc<Faults>,
}

/// What to put in a minted token.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// `user_id`; `None` for a service token.
    pub user_id: Option<String>,
    /// `client_id`.
    pub client_id: String,
    /// Scopes, joined with `,`.
    pub scopes: Vec<String>,
    /// `created_at` in ms (default: now).
    pub created_at_ms: i64,
    /// `expires_in` in ms (default: 24 h).
    pub expires_in_ms: i64,
    /// `type` (default `access_token`).
    pub token_type: String,
    /// `as` (default the development region).
    pub region: String,
    /// Sign with the certificate-only key.
    pub use_cert_key: bool,
}

impl TokenSpec {
    /// A user token.
    pub fn user(user_id: &str, client_id: &str, scopes: &[&str]) -> Self {
        Self {
            user_id: Some(user_id.to_owned()),
            ..Self::service(client_id, scopes)
        }
    }

    /// A service (client-credentials) token: no `user_id`.
    pub fn service(client_id: &str, scopes: &[&str]) -> Self {
        Self {
            user_id: None,
            client_id: client_id.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            created_at_ms: chrono::Utc::now().timestamp_millis(),
            expires_in_ms: 24 * 3_600_000,
            token_type: "access_token".to_owned(),
            region: world::REGION.to_owned(),
            use_cert_key: false,
        }
    }

    fn claims(&self) -> Value {
        let mut claims = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": self.token_type,
            "client_id": self.client_id,
            "as": self.region,
            "aa_id": "dev",
            "ctp": 0,
            "sid": uuid::Uuid::new_v4().to_string(),
            "scope": self.scopes.join(","),
            "created_at": self.created_at_ms.to_string(),
            "expires_in": self.expires_in_ms.to_string(),
        });
        if let Some(user) = &self.user_id {
            claims["user_id"] = json!(user);
        }
        claims
    }
}

/// Faults injected into `/ims/*` answers, and a count of requests per path.
#[derive(Default)]
pub struct Faults {
    delay_ms: AtomicU64,
    status: AtomicU16,
    garbage: AtomicBool,
    jwks: AtomicU8,
    profile_body: Mutex<Option<Value>>,
    cert_expiry: Mutex<Option<std::time::SystemTime>>,
    counts: Mutex<HashMap<String, u64>>,
    /// `(user, org)` -> the user's groups there, in place of the world's.
    groups: Mutex<HashMap<(String, String), Vec<String>>>,
    /// org -> the `orgName` listed for it, in place of the world's.
    org_names: Mutex<HashMap<String, String>>,
    /// `(path, traceparent)` of the `/ims/*` requests that carried one, oldest first.
    traceparents: Mutex<Vec<(String, String)>>,
    /// `(path, tracestate)` of the `/ims/*` requests that carried one, oldest first.
    tracestates: Mutex<Vec<(String, String)>>,
}

impl Faults {
    /// Delays every `/ims/*` answer.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    /// Answers every `/ims/*` request with this status (429 with `Retry-After: 1`).
    pub fn set_status(&self, s: Option<u16>) {
        self.status.store(s.unwrap_or(0), Ordering::Relaxed);
    }
    /// Answers every `/ims/*` request with 200 and a body that is not JSON.
    pub fn set_garbage(&self, on: bool) {
        self.garbage.store(on, Ordering::Relaxed);
    }
    /// Withdraws the access-token key from the JWKS and its certificate (as IMS does when it
    /// rotates a key out); its successor is published instead.
    pub fn set_withhold_keys(&self, on: bool) {
        self.set_jwks(if on {
            JwksAnswer::Rotated
        } else {
            JwksAnswer::Current
        });
    }
    /// What `/ims/keys` publishes from now on.
    pub fn set_jwks(&self, answer: JwksAnswer) {
        self.jwks.store(answer as u8, Ordering::Relaxed);
    }
    /// Requests received on paths starting with `prefix` so far.
    pub fn requests_under(&self, prefix: &str) -> u64 {
        self.counts
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|(p, _)| p.starts_with(prefix))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0)
    }
    /// Answers `/ims/profile/v1` with 200 and this body, whoever asks (`None`: the real profile).
    pub fn set_profile_body(&self, body: Option<Value>) {
        if let Ok(mut b) = self.profile_body.lock() {
            *b = body;
        }
    }
    /// Serves every certificate with this `notAfter` (`None`: the long-lived ones).
    pub fn set_certificate_expiry(&self, not_after: Option<std::time::SystemTime>) {
        if let Ok(mut e) = self.cert_expiry.lock() {
            *e = not_after;
        }
    }
    /// Replaces `user`'s groups in `org` as `/ims/organizations/v6` lists them from now on (an
    /// administrator removed from the administrators' group, say); the user stays a member. For a
    /// user outside the world (a technical account) it lists `org` with these groups.
    pub fn set_groups(&self, user: &str, org: &str, groups: &[&str]) {
        if let Ok(mut g) = self.groups.lock() {
            g.insert(
                (user.to_owned(), org.to_owned()),
                groups.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
    }
    /// Lists `org` under this `orgName` from now on (any text: control characters included).
    pub fn set_org_name(&self, org: &str, name: &str) {
        if let Ok(mut n) = self.org_names.lock() {
            n.insert(org.to_owned(), name.to_owned());
        }
    }
    /// The name listed for `org` if a test replaced it.
    fn org_name(&self, org: &str) -> Option<String> {
        self.org_names.lock().ok()?.get(org).cloned()
    }
    /// The orgs a test gave `user` groups in (for users outside the world, technical accounts).
    fn orgs_given_to(&self, user: &str) -> Vec<(String, Vec<String>)> {
        self.groups
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|((u, _), _)| u == user)
                    .map(|((_, org), groups)| (org.clone(), groups.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// `user`'s groups in `org` if a test replaced them.
    fn groups_of(&self, user: &str, org: &str) -> Option<Vec<String>> {
        self.groups
            .lock()
            .ok()?
            .get(&(user.to_owned(), org.to_owned()))
            .cloned()
    }
    /// Requests received on exactly `path` so far.
    pub fn requests(&self, path: &str) -> u64 {
        self.counts
            .lock()
            .map(|c| c.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The `traceparent` headers received on `/ims/*` requests so far, with their paths.
    pub fn traceparents(&self) -> Vec<(String, String)> {
        self.traceparents.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn note_traceparent(&self, path: &str, traceparent: &str) {
        if let Ok(mut t) = self.traceparents.lock() {
            t.push((path.to_owned(), traceparent.to_owned()));
        }
    }

    /// The `tracestate` headers received on `/ims/*` requests so far, with their paths.
    pub fn tracestates(&self) -> Vec<(String, String)> {
        self.tracestates.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn note_tracestate(&self, path: &str, tracestate: &str) {
        if let Ok(mut t) = self.tracestates.lock() {
            t.push((path.to_owned(), tracestate.to_owned()));
        }
    }
    /// Clears faults and counts.
    pub fn reset(&self) {
        self.set_delay(Duration::ZERO);
        self.set_status(None);
        self.set_garbage(false);
        self.set_withhold_keys(false);
        self.set_profile_body(None);
        self.set_certificate_expiry(None);
        if let Ok(mut c) = self.counts.lock() {
            c.clear();
        }
        if let Ok(mut g) = self.groups.lock() {
            g.clear();
        }
        if let Ok(mut n) = self.org_names.lock() {
            n.clear();
        }
        if let Ok(mut t) = self.traceparents.lock() {
            t.clear();
        }
        if let Ok(mut t) = self.tracestates.lock() {
            t.clear();
        }
    }
    fn count(&self, path: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(path.to_owned()).or_default() += 1;
        }
    }
    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }
    fn status(&self) -> Option<u16> {
        Some(self.status.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }
    fn jwks(&self) -> JwksAnswer {
        JwksAnswer::from_u8(self.jwks.load(Ordering::Relaxed))
    }
    fn cert_expiry(&self) -> Option<std::time::SystemTime> {
        self.cert_expiry.lock().ok().and_then(|e| *e)
    }
    fn profile_body(&self) -> Option<Value> {
        self.profile_body.lock().ok().and_then(|b| b.clone())
    }
    fn garbage(&self) -> bool {
        self.garbage.load(Ordering::Relaxed)
    }
}

impl DevIms {
    /// Starts on `addr` (e.g. `127.0.0.1:0`); returns once it accepts connections.
    pub async fn start(addr: &str) -> std::io::Result<DevIms> {
        let listener = std::net::TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let faults = std::sync::Arc::new(Faults::default());
        let server = server::build(listener, url.clone(), faults.clone())?;
        let handle = server.handle();
        tokio::spawn(server);
        Ok(DevIms { url, handle, faults })
    }

    /// Base URL, no trailing slash.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Base URL of the certificates (what `CCC_IMS_CERT_URL` points at).
    pub fn cert_base_url(&self) -> String {
        format!("{}/keys/", self.url)
    }

    /// The region (`as`) of minted tokens.
    pub fn region(&self) -> &'static str {
        world::REGION
    }

    /// A signed access token.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let kid = if spec.use_cert_key { CERT_KID } else { JWKS_KID };
        let header =
            json!({"alg": "RS256", "typ": "JWT", "kid": kid, "x5u": format!("{kid}.cer"), "itt": "at"});
        keys::key(kid).sign(&header, &spec.claims())
    }

    /// Signs any header and claims with the JWKS key (the header is used verbatim).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        keys::key(JWKS_KID).sign(header, claims)
    }

    /// Signs any header and claims with the certificate-only key.
    pub fn sign_raw_with_cert_key(&self, header: &Value, claims: &Value) -> String {
        keys::key(CERT_KID).sign(header, claims)
    }

    /// The JWKS key's public key as PEM (`BEGIN PUBLIC KEY`).
    pub fn public_key_pem(&self) -> String {
        keys::key(JWKS_KID).public_pem.clone()
    }

    /// Fault injection and request counts.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops the server.
    pub fn stop(&self) {
        drop(self.handle.stop(false));
    }

    /// Stops the server and returns once its port is closed (so it can be started again there).
    pub async fn shutdown(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for DevIms {
    fn drop(&mut self) {
        self.stop();
    }
}

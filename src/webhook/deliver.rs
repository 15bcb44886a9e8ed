//! The delivery worker: one dispatcher per replica, and one task per endpoint this replica delivers
//! to.
//!
//! The lease: an endpoint's row names the replica delivering to it (`lease_owner`) until
//! `lease_until`. A replica takes an endpoint whose lease is free or expired with one conditional
//! `UPDATE`, renews it with every outcome it writes and at least every fifth of the lease while idle,
//! and writes an outcome only while it still holds the lease at the generation it read. An attempt
//! starts only with more than the timeout left on the lease, so it ends before another replica may
//! take over; a replica that dies is replaced once its lease runs out, at the next sweep of another
//! (every fifth of the lease). The new holder starts after the position last written: the change
//! the dead one was delivering may come twice, none is skipped, and they come in order.
//!
//! An endpoint's task waits on the replica's "something committed" signal (the same as the change
//! feed's tail), reads the changes after its position, and delivers them one at a time, the next
//! only after a 2xx. Failures are retried on the configured schedule with jitter; a retry due later
//! than the next sweep gives the lease up, and whichever replica sweeps when it is due takes it.
//! Tasks are bounded (`CCC_WEBHOOK_MAX_DELIVERING`), and each waits only on its own endpoint, so one
//! slow receiver delays nobody else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Settings;
use super::address::{CheckedResolver, Refused};
use super::metrics::{Outcome, WebhookMetrics};
use super::secret::SecretBox;
use super::sign::signature;
use super::store::{DISABLED, EndpointRecord, Endpoints, Recorded};
use crate::representation::Change;
use crate::store::ChangeRecord;
use crate::watch::Watchers;

/// Most of a receiver's answer read (and thrown away: never logged).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Changes an endpoint's task reads at once.
const READ_AHEAD: u64 = 16;

/// How long a task or the dispatcher waits after the database failed it.
const DB_RETRY: Duration = Duration::from_millis(500);

/// The body of one delivery.
pub fn body(change: &ChangeRecord) -> Vec<u8> {
    let data = Change::from(change);
    let body = serde_json::json!({
        "type": format!("creative-cloud-connection.{}", change.kind.as_str()),
        "timestamp": data.at,
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The `webhook-id` of a change: the same on every attempt and replay, so receivers deduplicate.
pub fn message_id(change: &ChangeRecord) -> String {
    format!("msg_{}", change.position)
}

/// `d` give or take a fifth, at random: endpoints that failed together do not retry in step.
fn jittered(d: Duration) -> Duration {
    let r = f64::from(OsRng.next_u32() % 1_000) / 1_000.0;
    d.mul_f64(0.8 + 0.4 * r)
}

/// What one attempt came to.
#[derive(Debug)]
struct Attempt {
    outcome: Outcome,
    status_code: Option<u16>,
    error: Option<String>,
}

struct Shared {
    settings: Settings,
    endpoints: Endpoints,
    secrets: Option<SecretBox>,
    watchers: Watchers,
    metrics: WebhookMetrics,
    client: reqwest::Client,
    /// This replica's name in the leases.
    owner: String,
    /// The endpoints this replica is delivering to, each with the poke of its task.
    running: Mutex<HashMap<String, watch::Sender<()>>>,
    /// Wakes the dispatcher (an endpoint created, enabled or replayed here).
    sweep_now: watch::Sender<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// This replica's delivery worker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    /// A worker delivering to `endpoints` with `settings`, signing with `secrets`, woken by
    /// `watchers`. Call within the runtime it is to run on.
    pub fn new(
        settings: Settings,
        endpoints: Endpoints,
        secrets: Option<SecretBox>,
        watchers: Watchers,
        metrics: WebhookMetrics,
    ) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .dns_resolver(Arc::new(CheckedResolver(settings.policy)))
            .user_agent("cc-connection-webhooks")
            .build()
            .unwrap_or_else(|e| panic!("the webhook HTTP client cannot be built: {e}"));
        let host = whoami::hostname().unwrap_or_default();
        let mut host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(40).collect();
        if host.is_empty() {
            host.push_str("replica");
        }
        let owner = format!("{host}:{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            shared: Arc::new(Shared {
                settings,
                endpoints,
                secrets,
                watchers,
                metrics,
                client,
                owner,
                running: Mutex::new(HashMap::new()),
                sweep_now: watch::channel(()).0,
            }),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Starts the dispatcher.
    pub fn start(&self) {
        self.runtime.spawn(dispatch(self.shared.clone()));
    }

    /// Endpoint `id` changed: its task (if it runs here) reads it again, and the dispatcher sweeps.
    pub fn poke(&self, id: &str) {
        if let Some(poke) = running(&self.shared).get(id) {
            poke.send_replace(());
        }
        self.shared.sweep_now.send_replace(());
    }
}

fn running(shared: &Shared) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
    // One-step updates only: a panic leaves the map consistent.
    shared.running.lock().unwrap_or_else(|p| p.into_inner())
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Settings {
    /// How often leases are renewed and the dispatcher sweeps: a fifth of the lease.
    fn renew_every(&self) -> Duration {
        self.lease / 5
    }
}

async fn dispatch(shared: Arc<Shared>) {
    let mut stopping = shared.watchers.stopping();
    let mut sweep_now = shared.sweep_now.subscribe();
    let every = shared.settings.renew_every();
    loop {
        sweep_now.borrow_and_update();
        if let Err(e) = sweep(&shared).await {
            tracing::warn!(error = %e, "webhooks: the sweep failed; retrying");
        }
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            _ = sweep_now.changed() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Takes every endpoint due that no replica holds (up to this replica's bound), and reads the
/// gauges.
async fn sweep(shared: &Arc<Shared>) -> Result<(), crate::store::StoreError> {
    let settings = &shared.settings;
    let now = Utc::now();
    let room = settings.max_delivering.saturating_sub(running(shared).len());
    if room > 0 {
        let soon = after(now, settings.renew_every());
        let held = running(shared).len();
        let ids = shared
            .endpoints
            .claimable(&shared.owner, now, soon, (room + held) as u64)
            .await?;
        for id in ids {
            if running(shared).contains_key(&id) {
                continue;
            }
            if running(shared).len() >= settings.max_delivering {
                break;
            }
            let now = Utc::now();
            if !shared
                .endpoints
                .claim(&id, &shared.owner, now, after(now, settings.lease))
                .await?
            {
                continue;
            }
            let (poke, poked) = watch::channel(());
            running(shared).insert(id.clone(), poke);
            shared.metrics.delivering.inc();
            tokio::spawn(deliver_to(shared.clone(), id, poked));
        }
    }
    gauges(shared).await
}

async fn gauges(shared: &Shared) -> Result<(), crate::store::StoreError> {
    let metrics = &shared.metrics;
    let counts = shared.endpoints.count_by_status().await?;
    for status in [super::store::ACTIVE, super::store::FAILING, DISABLED] {
        let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        metrics.endpoints.with_label_values(&[status]).set(n);
    }
    let now = Utc::now();
    let oldest = shared.endpoints.oldest_undelivered().await?;
    metrics.oldest_undelivered.reset();
    for (id, at) in oldest {
        let age = at.map_or(0, |at| (now - at).num_seconds().max(0));
        metrics.oldest_undelivered.with_label_values(&[&id]).set(age);
    }
    Ok(())
}

/// Removes the endpoint from the running ones when its task ends, however it ends.
struct Running {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        running(&self.shared).remove(&self.id);
        self.shared.metrics.delivering.dec();
    }
}

/// How a task's wait ended.
enum Woken {
    Stopping,
    Poked,
    Other,
}

/// Delivers to endpoint `id`, whose lease this replica has just taken, until it loses or gives up
/// the lease, or the server stops.
async fn deliver_to(shared: Arc<Shared>, id: String, mut poked: watch::Receiver<()>) {
    let _running = Running {
        shared: shared.clone(),
        id: id.clone(),
    };
    let settings = &shared.settings;
    let endpoints = &shared.endpoints;
    let owner = shared.owner.as_str();
    let mut commits = shared.watchers.commits();
    let mut stopping = shared.watchers.stopping();
    let mut renewed = Instant::now();
    let mut endpoint: Option<EndpointRecord> = None;
    let mut ahead: VecDeque<ChangeRecord> = VecDeque::new();
    // Waits for `d`, a commit (when `on_commit`), a poke, or the stop.
    macro_rules! wait {
        ($d:expr, $on_commit:expr) => {{
            let d: Duration = $d;
            tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => Woken::Stopping,
                _ = poked.changed() => Woken::Poked,
                _ = commits.changed(), if $on_commit => Woken::Other,
                () = tokio::time::sleep(d) => Woken::Other,
            }
        }};
    }
    loop {
        if *stopping.borrow() {
            break;
        }
        if poked.has_changed().unwrap_or(false) {
            poked.borrow_and_update();
            endpoint = None;
        }
        if endpoint.is_none() || renewed.elapsed() >= settings.renew_every() {
            let now = Utc::now();
            match endpoints.claim(&id, owner, now, after(now, settings.lease)).await {
                Ok(true) => renewed = Instant::now(),
                // Taken over, disabled or deleted: nothing more here.
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "webhooks: could not renew a lease; retrying");
                    if renewed.elapsed() + settings.timeout >= settings.lease {
                        return;
                    }
                    if let Woken::Stopping = wait!(DB_RETRY, false) {
                        break;
                    }
                    continue;
                }
            }
            match endpoints.get(&id).await {
                Ok(Some(read)) if read.status != DISABLED => {
                    if endpoint.as_ref().is_none_or(|e| e.generation != read.generation) {
                        ahead.clear();
                    }
                    endpoint = Some(read);
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "webhooks: could not read an endpoint; retrying");
                    endpoint = None;
                    if let Woken::Stopping = wait!(DB_RETRY, false) {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(ep) = endpoint.as_mut() else {
            continue;
        };
        let until_renewal = settings.renew_every().saturating_sub(renewed.elapsed());
        if let Some(due) = ep.next_attempt_at {
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                if wait > until_renewal + settings.renew_every() {
                    // A later sweep (of any replica) takes it when it is due.
                    break;
                }
                match wait!(wait.min(until_renewal), false) {
                    Woken::Stopping => break,
                    Woken::Poked => endpoint = None,
                    Woken::Other => {}
                }
                continue;
            }
        }
        // Marked seen before the read: a commit from here on wakes the wait below.
        commits.borrow_and_update();
        if ahead.front().is_none_or(|c| c.position != ep.position + 1) {
            ahead.clear();
            match endpoints.store().changes_after(ep.position, READ_AHEAD).await {
                Ok(changes) => ahead.extend(changes),
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "webhooks: could not read the changes; retrying");
                    if let Woken::Stopping = wait!(DB_RETRY, false) {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(change) = ahead.front() else {
            match wait!(until_renewal, true) {
                Woken::Stopping => break,
                Woken::Poked => endpoint = None,
                Woken::Other => {}
            }
            continue;
        };
        // The attempt must end while the lease still holds.
        if renewed.elapsed() + settings.timeout + Duration::from_secs(1) >= settings.lease {
            endpoint = None;
            continue;
        }
        let attempt = attempt(&shared, ep, change).await;
        let at = Utc::now();
        let recorded = match attempt.outcome {
            Outcome::Delivered => Recorded::Delivered {
                position: change.position,
                status_code: attempt.status_code.unwrap_or(200),
            },
            Outcome::Gone => Recorded::Disabled {
                status_code: attempt.status_code,
                error: attempt.error,
                reason: "the receiver answered 410 Gone".to_owned(),
            },
            _ => {
                let failures = usize::try_from(ep.failures).unwrap_or(0) + 1;
                match settings.retry_schedule.get(failures - 1) {
                    Some(wait) => Recorded::Retry {
                        status_code: attempt.status_code,
                        error: attempt.error,
                        next_attempt_at: after(at, jittered(*wait)),
                    },
                    None => Recorded::Disabled {
                        status_code: attempt.status_code,
                        error: attempt.error,
                        reason: format!("{failures} attempts in a row failed"),
                    },
                }
            }
        };
        match endpoints
            .record(
                &id,
                owner,
                ep.generation,
                at,
                after(at, settings.lease),
                &recorded,
            )
            .await
        {
            Ok(true) => {
                renewed = Instant::now();
                match recorded {
                    Recorded::Delivered { position, .. } => {
                        ep.position = position;
                        ep.failures = 0;
                        ep.next_attempt_at = None;
                        ahead.pop_front();
                    }
                    Recorded::Retry { next_attempt_at, .. } => {
                        ep.failures += 1;
                        ep.next_attempt_at = Some(next_attempt_at);
                    }
                    Recorded::Disabled { .. } => {
                        let reason = if attempt.outcome == Outcome::Gone {
                            "gone"
                        } else {
                            "retries_exhausted"
                        };
                        shared.metrics.disabled.with_label_values(&[reason]).inc();
                        tracing::warn!(endpoint = %id, reason, "webhooks: an endpoint was disabled");
                        return;
                    }
                }
            }
            // Replayed, enabled or disabled meanwhile, or the lease was lost: read it again.
            Ok(false) => endpoint = None,
            Err(e) => {
                tracing::warn!(endpoint = %id, error = %e, "webhooks: could not record an attempt; retrying");
                endpoint = None;
                if let Woken::Stopping = wait!(DB_RETRY, false) {
                    break;
                }
            }
        }
    }
    // Given up here: another replica (or this one's next sweep) may take it at once.
    let _ = endpoints.release(&id, owner).await;
}

/// One delivery of `change` to `ep`.
async fn attempt(shared: &Shared, ep: &EndpointRecord, change: &ChangeRecord) -> Attempt {
    let started = Instant::now();
    let attempt = send(shared, ep, change).await;
    shared
        .metrics
        .attempt_duration
        .observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .deliveries
        .with_label_values(&[attempt.outcome.as_str()])
        .inc();
    attempt
}

fn failed(outcome: Outcome, error: impl Into<String>) -> Attempt {
    Attempt {
        outcome,
        status_code: None,
        error: Some(error.into()),
    }
}

async fn send(shared: &Shared, ep: &EndpointRecord, change: &ChangeRecord) -> Attempt {
    let Some(secrets) = &shared.secrets else {
        return failed(Outcome::Unreachable, "webhooks are off on this replica");
    };
    let url = match url::Url::parse(&ep.url) {
        Ok(url) => url,
        Err(_) => return failed(Outcome::Unreachable, "the URL does not parse"),
    };
    // The resolver checks names; an address written in the URL is checked here.
    if let Err(refused) = shared.settings.policy.check_url(&url) {
        return failed(Outcome::Unreachable, format!("refused: {refused}"));
    }
    let now = Utc::now();
    let mut keys = vec![&ep.secret];
    if let (Some(previous), Some(until)) = (&ep.previous_secret, ep.previous_secret_until)
        && until > now
    {
        keys.push(previous);
    }
    let body = body(change);
    let id = message_id(change);
    let timestamp = now.timestamp();
    let mut signatures = Vec::with_capacity(keys.len());
    for sealed in keys {
        let secret = match secrets.open(&ep.id, sealed) {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(endpoint = %ep.id, error = %e, "webhooks: cannot sign");
                return failed(
                    Outcome::Unreachable,
                    "the secret could not be decrypted on this replica",
                );
            }
        };
        match signature(&secret, &id, timestamp, &body) {
            Some(s) => signatures.push(s),
            None => return failed(Outcome::Unreachable, "the secret is malformed"),
        }
    }
    let request = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(body);
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return failed(classify(&e), describe(&e)),
    };
    let status = response.status();
    // The answer is read (so the connection can be reused), up to a bound, and never kept.
    let mut read = 0usize;
    while read < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break,
            Err(e) if e.is_timeout() => return failed(Outcome::Timeout, "the answer did not arrive in time"),
            Err(_) => break,
        }
    }
    let outcome = if status.is_success() {
        Outcome::Delivered
    } else if status == reqwest::StatusCode::GONE {
        Outcome::Gone
    } else {
        Outcome::Rejected
    };
    Attempt {
        outcome,
        status_code: Some(status.as_u16()),
        error: status
            .is_redirection()
            .then(|| "redirects are not followed".to_owned()),
    }
}

fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Unreachable
    }
}

/// What failed, in words that carry nothing of the receiver's answer.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the timeout".to_owned();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        source = cause.source();
    }
    if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

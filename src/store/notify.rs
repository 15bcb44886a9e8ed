//! How the store tells this replica it committed a change, without knowing who listens.
//!
//! On PostgreSQL the switch, disconnect and removal transactions `NOTIFY` [`CHANNEL`] (delivered
//! on commit, to every replica's listener). On SQLite the store calls its [`CommitListener`] after
//! each such commit, in process.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::TenantId;

/// The PostgreSQL notification channel of connection changes; the payload is
/// `<tenant_id> <commit time in Unix microseconds>`.
pub const CHANNEL: &str = "ccc_connection";

/// The payload sent with a change of `tenant` committed (about) `at`.
pub fn payload(tenant: &TenantId, at: SystemTime) -> String {
    let micros = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    format!("{tenant} {micros}")
}

/// The tenant and commit time of a [`CHANNEL`] payload (`None`: not one of ours; the time is
/// optional).
pub fn parse_payload(payload: &str) -> Option<(TenantId, Option<SystemTime>)> {
    let (tenant, micros) = payload.split_once(' ').unwrap_or((payload, ""));
    let tenant = TenantId::parse(tenant).ok()?;
    let committed = micros
        .parse::<u64>()
        .ok()
        .map(|m| UNIX_EPOCH + Duration::from_micros(m));
    Some((tenant, committed))
}

/// Told of every change this process commits on SQLite (PostgreSQL's are told by `NOTIFY`).
pub trait CommitListener: Send + Sync + 'static {
    /// `tenant` changed, committed (about) `at`.
    fn committed(&self, tenant: &TenantId, at: SystemTime);
}

/// The store's listener, shared by its clones; none until one is set.
#[derive(Clone, Default)]
pub(crate) struct Notifier(Arc<RwLock<Option<Arc<dyn CommitListener>>>>);

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("listening", &self.listener().is_some())
            .finish()
    }
}

impl Notifier {
    pub(crate) fn set(&self, listener: Arc<dyn CommitListener>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn listener(&self) -> Option<Arc<dyn CommitListener>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the listener of `tenant`'s change when the returned guard is dropped: also when the
    /// commit's future is dropped while the commit goes on (a wake for a commit that failed costs
    /// the listener one read).
    pub(crate) fn on_drop(&self, tenant: &TenantId) -> NotifyOnDrop {
        NotifyOnDrop {
            notifier: self.clone(),
            tenant: tenant.clone(),
        }
    }
}

/// See [`Notifier::on_drop`].
pub(crate) struct NotifyOnDrop {
    notifier: Notifier,
    tenant: TenantId,
}

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        if let Some(listener) = self.notifier.listener() {
            listener.committed(&self.tenant, SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_refused() {
        let tenant = TenantId::parse("acme-prod").unwrap();
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let (t, c) = parse_payload(&payload(&tenant, at)).unwrap();
        assert_eq!(t, tenant);
        assert_eq!(c, Some(at));
        assert_eq!(parse_payload("acme-prod").unwrap().1, None);
        assert!(parse_payload("not/a-tenant 1").is_none());
        assert!(parse_payload("").is_none());
    }
}

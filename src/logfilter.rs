//! Keeps what any client can cause out of the error log: the HTTP layer logs a request that does not
//! parse (and one whose head comes too slowly) at ERROR, so anyone could flood the log with them.
//! Those events are counted (`ccc_http_dropped_connections_total{kind}`) instead of written; every
//! other event passes. The layer is the process's (as the tracing subscriber is), so its counts
//! are too; each application's `/metrics` samples them.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The module of the HTTP/1 layer that logs dropped connections.
const DISPATCHER: &str = "actix_http::h1::dispatcher";

/// A layer that filters out (and counts) the HTTP layer's client-caused connection errors.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientErrorsCounted;

/// The kinds of client-caused connection errors, as labelled.
const KINDS: [&str; 2] = ["malformed", "timeout"];

/// Connections dropped in this process, by kind (as [`KINDS`]).
static DROPPED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Connections dropped in this process for the client's doing, by kind.
pub fn dropped_connections() -> [(&'static str, u64); 2] {
    [0, 1].map(|i| (KINDS[i], DROPPED[i].load(Ordering::Relaxed)))
}

/// The kind of a dispatcher error message (its index in [`KINDS`]), if the client caused it.
fn client_caused(message: &str) -> Option<usize> {
    let detail = message.strip_prefix("stream error: ")?;
    if detail.starts_with("request parse error") {
        Some(0)
    } else if detail.starts_with("request did not complete within the specified timeout") {
        Some(1)
    } else {
        None
    }
}

struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for ClientErrorsCounted {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || meta.target() != DISPATCHER {
            return true;
        }
        let mut message = Message(None);
        event.record(&mut message);
        match message.0.as_deref().and_then(client_caused) {
            Some(kind) => {
                DROPPED[kind].fetch_add(1, Ordering::Relaxed);
                false
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_caused_dispatcher_errors_are_recognised() {
        assert_eq!(
            client_caused("stream error: request parse error: invalid Header provided").map(|k| KINDS[k]),
            Some("malformed")
        );
        assert_eq!(
            client_caused("stream error: request did not complete within the specified timeout")
                .map(|k| KINDS[k]),
            Some("timeout")
        );
        assert_eq!(client_caused("stream error: I/O error: broken pipe"), None);
        assert_eq!(client_caused("write zero; closing"), None);
    }
}

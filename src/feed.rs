//! The change feed's push side: one tail per replica reads the changes committed after the last it
//! published and publishes them on a bounded broadcast; each Server-Sent Events subscriber catches
//! up from the database, then follows the broadcast.
//!
//! The tail wakes on the watchers' "something committed" signal (`Watchers::commits`: every change
//! delivered to this replica, and the re-checks while the change channel is down), and every few
//! seconds anyway. It reads the database, so what it publishes is in position order without gaps
//! (positions follow commit order: `store/change.rs`).
//!
//! A subscriber subscribes to the broadcast *before* it catches up, so a change is either in its
//! catch-up read or received afterwards; it skips what it already sent, and reads the database
//! again if it ever meets a position further than the next one, and after every heartbeat (so
//! nothing the tail failed to publish is held back longer than one heartbeat). A subscriber that falls further
//! behind than the broadcast holds (it does not read) is cut off: its stream ends and the client
//! resumes from the last id it got (`Last-Event-ID`). What a subscriber holds is bounded: one
//! catch-up page of 100 events, and its place in the shared broadcast.
//!

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::web::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::representation::Change;
use crate::store::{ChangeRecord, Store};
use crate::watch::Watchers;

/// Changes the tail reads from the database at once.
pub const PAGE: u64 = 1_000;

/// Changes a subscriber reads at once while it catches up: what it holds ready to send is at most
/// this many events (about 40 KiB), so many subscribers catching up at once stay small.
const CATCH_UP_PAGE: u64 = 100;

/// How often the tail (and a long poll) reads the database even without a signal: a signal lost
/// to a stalled change channel is made up for within this.
pub const RECHECK: Duration = Duration::from_secs(2);

/// How long the tail waits before reading again after the database failed it.
const TAIL_RETRY: Duration = Duration::from_millis(500);

/// One change, as a Server-Sent Event ready to send.
#[derive(Debug)]
pub struct Frame {
    /// Its position.
    pub position: i64,
    /// `id: <position>\nevent: change\ndata: <json>\n\n`.
    pub bytes: Bytes,
}

impl Frame {
    /// The event of `change`.
    pub fn of(change: &ChangeRecord) -> Self {
        let json = serde_json::to_string(&Change::from(change)).unwrap_or_default();
        Self {
            position: change.position,
            bytes: Bytes::from(format!(
                "id: {}\nevent: change\ndata: {json}\n\n",
                change.position
            )),
        }
    }
}

/// The heartbeat event: the last position this subscriber has been sent.
fn position_event(position: i64) -> Bytes {
    Bytes::from(format!(
        "event: position\ndata: {{\"position\":\"{position}\"}}\n\n"
    ))
}

/// This replica's broadcast of committed changes, its tail started with its first subscriber.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Store,
    watchers: Watchers,
    capacity: usize,
    /// The runtime the tail runs on: the one the hub was built on, never the worker of the first
    /// subscriber (which stops with that worker).
    runtime: Handle,
    changes: Arc<OnceLock<broadcast::Sender<Arc<Frame>>>>,
    /// Turns true once the tail has read where it starts: a subscriber catches up only after
    /// that, so a change committed meanwhile is in its catch-up or published by the tail.
    started: Arc<watch::Sender<bool>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// The broadcast of `store`'s changes, holding `capacity` of them, woken by `watchers`'
    /// "something committed" signal, its subscribers counted in `metrics`. Call within the runtime
    /// the tail is to run on.
    pub fn new(store: Store, watchers: Watchers, capacity: usize, metrics: &Arc<Metrics>) -> Self {
        Self {
            store,
            watchers,
            capacity: capacity.max(1),
            runtime: Handle::current(),
            changes: Arc::default(),
            started: Arc::new(watch::channel(false).0),
            metrics: metrics.clone(),
        }
    }

    /// A receiver of every change the tail publishes from now on (the tail starts now if it has
    /// not yet).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.changes
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(self.capacity);
                self.runtime.spawn(tail(
                    self.store.clone(),
                    self.watchers.clone(),
                    sender.clone(),
                    self.started.clone(),
                ));
                sender
            })
            .subscribe()
    }
}

async fn tail(
    store: Store,
    watchers: Watchers,
    changes: broadcast::Sender<Arc<Frame>>,
    started: Arc<watch::Sender<bool>>,
) {
    let mut signal = watchers.commits();
    let mut stopping = watchers.stopping();
    let mut last = loop {
        match store.change_head().await {
            Ok(head) => {
                started.send_replace(true);
                break head;
            }
            Err(e) => {
                tracing::warn!(error = %e, "change feed: could not read the head; retrying");
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(TAIL_RETRY) => {}
                }
            }
        }
    };
    loop {
        // Marked seen before the read: a commit signalled during it wakes the next loop.
        signal.borrow_and_update();
        let mut failed = false;
        loop {
            match store.changes_after(last, PAGE).await {
                Ok(page) => {
                    let full = page.len() as u64 == PAGE;
                    for change in &page {
                        last = change.position;
                        // No receiver now is fine: a subscriber catches up from the database.
                        let _ = changes.send(Arc::new(Frame::of(change)));
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: could not read the changes; retrying");
                    failed = true;
                    break;
                }
            }
        }
        let wait = if failed { TAIL_RETRY } else { RECHECK };
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            changed = signal.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One Server-Sent Events subscriber: what it has been sent, and what it still has to send.
pub struct Subscriber {
    store: Store,
    changes: broadcast::Receiver<Arc<Frame>>,
    stopping: watch::Receiver<bool>,
    /// Whether the tail has read where it starts (see [`Hub`]).
    tail_started: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// The last position sent (or the one resumed from).
    position: i64,
    /// Events ready to send (at most one catch-up page).
    ready: VecDeque<Bytes>,
    /// Whether the database has been read up to the broadcast.
    caught_up: bool,
    heartbeat: Duration,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.metrics.feed_subscribers.dec();
    }
}

impl Subscriber {
    /// A subscriber of `hub` that resumes after `position`, sending `event: position` after
    /// `heartbeat` without a change. Subscribes before anything is read.
    pub fn new(hub: &Hub, position: i64, heartbeat: Duration) -> Self {
        let changes = hub.subscribe();
        hub.metrics.feed_subscribers.inc();
        Self {
            store: hub.store.clone(),
            changes,
            stopping: hub.watchers.stopping(),
            tail_started: hub.started.subscribe(),
            metrics: hub.metrics.clone(),
            position,
            ready: VecDeque::new(),
            caught_up: false,
            heartbeat,
        }
    }

    /// The next bytes to send; `None` ends the stream (the server is stopping, the subscriber fell
    /// behind, or the database failed a catch-up read: the client resumes from its last id).
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if *self.stopping.borrow() {
                return None;
            }
            if !self.caught_up {
                tokio::select! {
                    biased;
                    _ = self.stopping.wait_for(|s| *s) => return None,
                    started = self.tail_started.wait_for(|s| *s) => if started.is_err() { return None },
                }
                let page = match self.store.changes_after(self.position, CATCH_UP_PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed: a subscriber's catch-up failed; closing it");
                        return None;
                    }
                };
                self.caught_up = (page.len() as u64) < CATCH_UP_PAGE;
                for change in &page {
                    self.position = change.position;
                    self.ready.push_back(Frame::of(change).bytes);
                }
                self.metrics.feed_changes_sent.inc_by(page.len() as u64);
                continue;
            }
            tokio::select! {
                biased;
                _ = self.stopping.wait_for(|s| *s) => return None,
                received = self.changes.recv() => match received {
                    Ok(frame) if frame.position <= self.position => {}
                    Ok(frame) if frame.position == self.position + 1 => {
                        self.position = frame.position;
                        self.metrics.feed_changes_sent.inc();
                        return Some(frame.bytes.clone());
                    }
                    // Positions are dense: a jump means something was not seen; read it.
                    Ok(_) => self.caught_up = false,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.metrics.feed_subscribers_cut.inc();
                        tracing::info!(position = self.position, "change feed: a subscriber fell behind; closing it");
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(self.heartbeat) => {
                    // A quiet spell: say where the feed is, and read the database once more
                    // before waiting again, so a change the tail did not publish (its signal or
                    // its read lost) still reaches this subscriber within one heartbeat.
                    self.caught_up = false;
                    return Some(position_event(self.position));
                }
            }
        }
    }
}

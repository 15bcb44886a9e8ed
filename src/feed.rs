//! The change feed's push side: one tail per replica reads the changes committed after the last it
//! read, keeps the latest of them in memory and publishes them on a bounded broadcast. Every held
//! request of the feed is answered from that one tail: a long poll waits for the tail's head to
//! pass its position and takes its page from what the tail holds; a Server-Sent Events subscriber
//! catches up from the database, then follows the broadcast. N held requests so cost one database
//! read per commit and per re-check, not N.
//!
//! The tail wakes on the watchers' "something committed" signal (`Watchers::commits`: every change
//! delivered to this replica, and the re-checks while the change channel is down), and every few
//! seconds anyway. It reads the database, so what it holds is in position order without gaps
//! (positions follow commit order: `store/change.rs`), and its read starts after the commit was
//! signalled: an answer taken from it includes every change acknowledged before that signal.
//!
//! A subscriber subscribes to the broadcast *before* it catches up, so a change is either in its
//! catch-up read or received afterwards; it skips what it already sent, and fills a gap (a position
//! further than the next one) from what the tail holds, or the database when the gap is older. At
//! every heartbeat it compares its position with the tail's head, so nothing the tail read is held
//! back longer than one heartbeat. A subscriber that falls further behind than the broadcast holds
//! (it does not read) is cut off: its stream ends and the client resumes from the last id it got
//! (`Last-Event-ID`). What a subscriber holds is bounded: one catch-up page of 100 events, and its
//! place in the shared broadcast.
//!

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
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

/// How often the tail reads the database even without a signal: a signal lost to a stalled change
/// channel is made up for within this.
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

/// What the tail has read: every change after `start` up to its head, the latest `capacity` kept.
#[derive(Debug, Default)]
struct Recent {
    /// Every change after this position, up to the tail's head, is in `changes`.
    start: i64,
    changes: VecDeque<Arc<ChangeRecord>>,
}

/// Which read of the feed's rows a database read is, in `ccc_feed_reads_total`.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// The replica's one tail.
    Tail,
    /// A request's own first read (a page, a long poll before it waits).
    Request,
    /// A stream behind what the tail holds.
    CatchUp,
}

impl Reader {
    fn label(self) -> &'static str {
        match self {
            Self::Tail => "tail",
            Self::Request => "request",
            Self::CatchUp => "catch-up",
        }
    }
}

/// This replica's tail of committed changes: what it holds, its head, and the broadcast of what it
/// reads; the tail is started with its first follower. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Store,
    watchers: Watchers,
    capacity: usize,
    /// The runtime the tail runs on: the one the hub was built on, never the worker of the first
    /// follower (which stops with that worker).
    runtime: Handle,
    changes: Arc<OnceLock<broadcast::Sender<Arc<Frame>>>>,
    /// The last position the tail has read; `None` until it has read where it starts. A follower
    /// catches up only after that, so a change committed meanwhile is in its catch-up or read by
    /// the tail.
    head: Arc<watch::Sender<Option<i64>>>,
    recent: Arc<Mutex<Recent>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// The tail of `store`'s changes, holding the latest `capacity` of them (and as many in its
    /// broadcast), woken by `watchers`' "something committed" signal, its subscribers counted in
    /// `metrics`. Call within the runtime the tail is to run on.
    pub fn new(store: Store, watchers: Watchers, capacity: usize, metrics: &Arc<Metrics>) -> Self {
        Self {
            store,
            watchers,
            capacity: capacity.max(1),
            runtime: Handle::current(),
            changes: Arc::default(),
            head: Arc::new(watch::channel(None).0),
            recent: Arc::default(),
            metrics: metrics.clone(),
        }
    }

    /// A receiver of every change the tail publishes from now on (the tail starts now if it has
    /// not yet).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.sender().subscribe()
    }

    fn sender(&self) -> &broadcast::Sender<Arc<Frame>> {
        self.changes.get_or_init(|| {
            let (sender, _) = broadcast::channel(self.capacity);
            self.runtime.spawn(tail(self.clone(), sender.clone()));
            sender
        })
    }

    /// The tail's head: the last position it has read (`None` until it has read where it
    /// starts). Starts the tail if it has not yet.
    pub fn head(&self) -> watch::Receiver<Option<i64>> {
        self.sender();
        self.head.subscribe()
    }

    /// The changes after `after` that the tail holds, at most `limit`, oldest first; `None` when
    /// it does not hold every change after `after` (older than what it keeps, or before it
    /// started): read them from the database.
    pub fn recent_after(&self, after: i64, limit: u64) -> Option<Vec<Arc<ChangeRecord>>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if self.head.borrow().is_none() || after < recent.start {
            return None;
        }
        let from = recent.changes.partition_point(|c| c.position <= after);
        Some(
            recent
                .changes
                .range(from..)
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .cloned()
                .collect(),
        )
    }

    /// The changes after `after`, at most `limit`, read from the database by `reader`.
    pub async fn read(
        &self,
        reader: Reader,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ChangeRecord>, crate::store::StoreError> {
        self.metrics.feed_reads.with_label_values(&[reader.label()]).inc();
        self.store.changes_after(after, limit).await
    }

    /// Keeps `page` (read after the tail's head) and moves the head to its last change.
    fn hold(&self, page: &[ChangeRecord]) -> Vec<Arc<ChangeRecord>> {
        let page: Vec<Arc<ChangeRecord>> = page.iter().cloned().map(Arc::new).collect();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.changes.extend(page.iter().cloned());
        while recent.changes.len() > self.capacity {
            if let Some(dropped) = recent.changes.pop_front() {
                recent.start = dropped.position;
            }
        }
        page
    }
}

async fn tail(hub: Hub, changes: broadcast::Sender<Arc<Frame>>) {
    let mut signal = hub.watchers.commits();
    let mut stopping = hub.watchers.stopping();
    let mut last = loop {
        match hub.store.change_head().await {
            Ok(head) => {
                hub.recent.lock().unwrap_or_else(|p| p.into_inner()).start = head;
                hub.head.send_replace(Some(head));
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
            match hub.read(Reader::Tail, last, PAGE).await {
                Ok(page) => {
                    let full = page.len() as u64 == PAGE;
                    for change in hub.hold(&page) {
                        last = change.position;
                        // No receiver now is fine: a subscriber catches up from the database.
                        let _ = changes.send(Arc::new(Frame::of(&change)));
                    }
                    hub.head.send_if_modified(|head| {
                        let moved = *head != Some(last);
                        *head = Some(last);
                        moved
                    });
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
    hub: Hub,
    changes: broadcast::Receiver<Arc<Frame>>,
    stopping: watch::Receiver<bool>,
    /// The tail's head (see [`Hub`]).
    head: watch::Receiver<Option<i64>>,
    /// The last position sent (or the one resumed from).
    position: i64,
    /// Events ready to send (at most one catch-up page).
    ready: VecDeque<Bytes>,
    /// Whether everything up to the broadcast has been read (the database, or what the tail
    /// holds), and whether the database has been read once (the subscriber's own first read).
    caught_up: bool,
    first_read: bool,
    heartbeat: Duration,
    /// The `retry:` line, sent first.
    retry: Option<Bytes>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub.metrics.feed_subscribers.dec();
    }
}

impl Subscriber {
    /// A subscriber of `hub` that resumes after `position`, sending `event: position` after
    /// `heartbeat` without a change. Subscribes before anything is read.
    pub fn new(hub: &Hub, position: i64, heartbeat: Duration) -> Self {
        let changes = hub.subscribe();
        hub.metrics.feed_subscribers.inc();
        Self {
            hub: hub.clone(),
            changes,
            stopping: hub.watchers.stopping(),
            head: hub.head.subscribe(),
            position,
            ready: VecDeque::new(),
            caught_up: false,
            first_read: true,
            heartbeat,
            retry: None,
        }
    }

    /// Opens the stream with `retry: <ms>`: how long a client waits before it reconnects.
    #[must_use]
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = Some(Bytes::from(format!("retry: {}\n\n", retry.as_millis())));
        self
    }

    /// Reads what comes after the last position sent: from what the tail holds when it can, else
    /// (the first read, or behind what the tail keeps) from the database, one page.
    async fn fill(&mut self) -> Result<(), crate::store::StoreError> {
        let held = if self.first_read {
            None
        } else {
            self.hub.recent_after(self.position, CATCH_UP_PAGE)
        };
        let page: Vec<Arc<ChangeRecord>> = match held {
            Some(page) => page,
            None => {
                let reader = if self.first_read {
                    Reader::Request
                } else {
                    Reader::CatchUp
                };
                self.first_read = false;
                let page = self.hub.read(reader, self.position, CATCH_UP_PAGE).await?;
                page.into_iter().map(Arc::new).collect()
            }
        };
        self.caught_up = (page.len() as u64) < CATCH_UP_PAGE;
        for change in &page {
            self.position = change.position;
            self.ready.push_back(Frame::of(change).bytes);
        }
        self.hub.metrics.feed_changes_sent.inc_by(page.len() as u64);
        Ok(())
    }

    /// The next bytes to send; `None` ends the stream (the server is stopping, the subscriber fell
    /// behind, or the database failed a catch-up read: the client resumes from its last id).
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(retry) = self.retry.take() {
            return Some(retry);
        }
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
                    started = self.head.wait_for(Option::is_some) => if started.is_err() { return None },
                }
                if let Err(e) = self.fill().await {
                    tracing::warn!(error = %e, "change feed: a subscriber's catch-up failed; closing it");
                    return None;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.stopping.wait_for(|s| *s) => return None,
                received = self.changes.recv() => match received {
                    Ok(frame) if frame.position <= self.position => {}
                    Ok(frame) if frame.position == self.position + 1 => {
                        self.position = frame.position;
                        self.hub.metrics.feed_changes_sent.inc();
                        return Some(frame.bytes.clone());
                    }
                    // Positions are dense: a jump means something was not seen; read it.
                    Ok(_) => self.caught_up = false,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.hub.metrics.feed_subscribers_cut.inc();
                        tracing::info!(position = self.position, "change feed: a subscriber fell behind; closing it");
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(self.heartbeat) => {
                    // A quiet spell: say where the feed is, and look at the tail's head before
                    // waiting again, so a change the tail read but this subscriber did not
                    // receive still reaches it within one heartbeat.
                    let head = (*self.head.borrow()).unwrap_or(self.position);
                    if head > self.position {
                        self.caught_up = false;
                    }
                    return Some(position_event(self.position));
                }
            }
        }
    }
}

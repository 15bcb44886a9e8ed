//! `/creative-cloud-connections`: every tenant's connection, and the change feed after it (JSON
//! pages, long polls, and a Server-Sent Events stream of its own). Integrations only.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, route, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::wait::Wait;
use crate::auth::Integration;
use crate::domain::{OrgId, Revision, TenantId, UserId};
use crate::error::{ApiError, RetryAfter};
use crate::feed::{Reader, Subscriber};
use crate::representation::Change;
use crate::state::AppState;
use crate::store::{ChangeRecord, ListedTenant};

/// The most items of one page (the listing and the changes).
pub const MAX_LIMIT: u64 = 1_000;
/// The items of a page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;

/// One registered tenant and its state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::representation::connection_example)]
pub struct ListedConnection {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connected Creative Cloud org; `null` when not connected.
    #[schema(required = true)]
    pub org_id: Option<OrgId>,
    /// Its name, as IMS gave it when it was connected; `null` when not connected.
    #[schema(required = true)]
    pub org_name: Option<String>,
    /// The administrator who connected it.
    #[schema(required = true)]
    pub connected_by: Option<UserId>,
    /// When it was connected.
    #[schema(required = true)]
    pub connected_at: Option<DateTime<Utc>>,
    /// The tenant's revision: apply a change only when its revision is higher.
    #[schema(value_type = i64)]
    pub revision: Revision,
}

impl From<&ListedTenant> for ListedConnection {
    fn from(t: &ListedTenant) -> Self {
        let active = t.active.as_ref();
        Self {
            tenant_id: t.tenant_id.clone(),
            org_id: active.map(|a| a.0.clone()),
            org_name: active.map(|a| a.1.clone()),
            connected_by: active.map(|a| a.2.clone()),
            connected_at: active.map(|a| a.3),
            revision: t.revision,
        }
    }
}

/// A page of the listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "connections": [{
        "tenant_id": "acme-prod", "org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
        "connected_by": "ABCDEF0123456789ABCDEF01@AdobeID", "connected_at": "2026-11-24T03:00:00Z", "revision": 7
    }],
    "next_cursor": null, "position": "42"
}))]
pub struct ConnectionsPage {
    /// The tenants of this page, by tenant id.
    pub connections: Vec<ListedConnection>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// Follow the feed from here (the same on every page of one listing): every change committed
    /// after the listing began is after it.
    pub position: String,
}

/// A page of changes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "changes": [{
        "position": "43", "tenant_id": "acme-prod", "kind": "switched",
        "org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
        "previous_org_id": "FEDCBA9876543210FEDCBA98@AdobeOrg", "revision": 8,
        "at": "2026-11-25T10:00:00Z", "by": "ABCDEF0123456789ABCDEF01@AdobeID"
    }],
    "position": "43"
}))]
pub struct ChangesPage {
    /// The changes after `after`, oldest first.
    pub changes: Vec<Change>,
    /// The last change's position, or `after` when there is none: pass it as the next `after`.
    pub position: String,
}

/// Paging of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Tenants per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Where to read the feed from (how long to wait is [`Wait`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// A position from this service (a change's, a page's or the listing's); omitted: from the
    /// start of the kept history.
    #[param(example = "42")]
    pub after: Option<String>,
    /// Changes per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u64>,
}

/// Where the stream starts (unless `Last-Event-ID` says).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A position from this service (a change's, a page's or the listing's); omitted: from the
    /// start of the kept history. `Last-Event-ID`, when sent and not empty, wins.
    #[param(example = "42")]
    pub after: Option<String>,
}

/// How long a client of the stream waits before it reconnects (`retry:`), in milliseconds.
pub const STREAM_RETRY: Duration = Duration::from_millis(2_000);

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))
}

fn limit_of(limit: Option<u64>) -> Result<u64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    Ok(limit)
}

const NOT_A_POSITION: &str = "not a position this service handed out";

/// A position as sent: the decimal number, no sign.
fn parse_position(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid(format!("{what} is {NOT_A_POSITION}")))
}

/// Refuses (410 `unknown-position`) a position beyond the last one handed out (read now: any
/// position a client was given is at most the head of a later read): from another database, or
/// made up. The client lists again.
async fn checked(state: &AppState, what: &'static str, position: i64) -> Result<i64, ApiError> {
    if position > 0 && position > state.store.change_head().await? {
        return Err(ApiError::UnknownPosition(what));
    }
    Ok(position)
}

/// Every registered tenant with its connection and revision, and the feed position to follow from.
///
/// Integration service tokens only. Paged by tenant id; every page of one listing carries the same
/// `position`, taken when the first page was read. A client that applies the listing, then follows
/// the feed from `position` applying a change only when its revision is higher than the one it
/// holds, is exactly current, whatever changed while it listed.
#[utoipa::path(
    tag = "feed",
    params(ListQuery),
    responses((status = 200, description = "A page of the listing", body = ConnectionsPage)),
    security(("bearer" = [])),
)]
#[route("/creative-cloud-connections", method = "GET", method = "HEAD")]
pub async fn list_connections(
    _integration: Integration,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = query(&req)?;
    let limit = limit_of(q.limit)?;
    let (position, after) = match q.cursor.as_deref() {
        // Before any row: a change committed after this read is after this position.
        None => (state.store.change_head().await?, None),
        Some(cursor) => {
            let bad = || ApiError::invalid("cursor is not one this service issued");
            let (position, tenant) = cursor.split_once(':').ok_or_else(bad)?;
            let position = parse_position("cursor", position).map_err(|_| bad())?;
            let tenant = TenantId::parse(tenant).map_err(|_| bad())?;
            // A cursor is not a position: one this feed never handed out is a bad cursor.
            if position > 0 && position > state.store.change_head().await? {
                return Err(bad());
            }
            (position, Some(tenant))
        }
    };
    // One more than asked tells whether another page follows.
    let mut rows = state.store.list_connections(after.as_ref(), limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|t| format!("{position}:{}", t.tenant_id)))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(ConnectionsPage {
            connections: rows.iter().map(ListedConnection::from).collect(),
            next_cursor,
            position: position.to_string(),
        }))
}

/// The changes of every tenant after a position, in commit order (JSON).
///
/// Integration service tokens only. Every switch, disconnect, tenant registration and removal is in
/// the feed once; positions follow commit order (a reader that has seen a position never later
/// meets a lower one); a read started after a change was acknowledged includes it. With `wait`,
/// held while there is nothing after `after`, answered as soon as a change commits on any replica
/// (else an empty page when `wait` runs out). JSON whatever `Accept` says: the stream is
/// `/creative-cloud-connections/changes/stream`. A held long poll counts against the caps on held
/// requests (with streams and watches): beyond them, 429 `rate-limited` with `Retry-After`.
#[utoipa::path(
    tag = "feed",
    params(ChangesQuery, Wait),
    responses((status = 200, description = "The changes after `after`", body = ChangesPage)),
    security(("bearer" = [])),
)]
#[route("/creative-cloud-connections/changes", method = "GET", method = "HEAD")]
pub async fn get_changes(
    integration: Integration,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q: ChangesQuery = query(&req)?;
    let limit = limit_of(q.limit)?;
    let wait = Wait::parse(req.query_string())?.filter(|_| req.method() == Method::GET);
    let after = q
        .after
        .as_deref()
        .map(|a| parse_position("after", a))
        .transpose()?
        .unwrap_or(0);
    // Following the tail's head from before the read: a change committed after it moves the head.
    let head = wait.map(|_| state.hub.head());
    let mut changes: Vec<Arc<ChangeRecord>> = state
        .hub
        .read(Reader::Request, after, limit)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    if changes.is_empty() {
        checked(&state, "after", after).await?;
        if let (Some(wait), Some(head)) = (wait, head) {
            crate::telemetry::note_held(&req);
            changes = long_poll(&state, &integration, head, after, limit, wait).await?;
        }
    }
    let position = changes.last().map_or(after, |c| c.position);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(ChangesPage {
            changes: changes.iter().map(|c| Change::from(&**c)).collect(),
            position: position.to_string(),
        }))
}

/// Holds a page with nothing after `after` until the tail's head passes it (`head` was followed
/// from before the page's read), for at most `wait`, and answers from what the tail holds: every
/// held long poll of the replica is answered by the tail's one read, none reads on its own.
async fn long_poll(
    state: &AppState,
    integration: &Integration,
    mut head: tokio::sync::watch::Receiver<Option<i64>>,
    after: i64,
    limit: u64,
    wait: Duration,
) -> Result<Vec<Arc<ChangeRecord>>, ApiError> {
    let mut stopping = state.watchers.stopping();
    if *stopping.borrow() {
        return Ok(Vec::new());
    }
    let _place = state
        .watchers
        .hold(&integration.caller.key())
        .ok_or(ApiError::TooManyHeld(RetryAfter::HELD_REQUESTS))?;
    let deadline = tokio::time::Instant::now() + wait;
    // An empty answer at the deadline is as of the page's read, which found nothing: no read then.
    tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => return Ok(Vec::new()),
        moved = head.wait_for(|h| h.is_some_and(|h| h > after)) => if moved.is_err() { return Ok(Vec::new()) },
        () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
    }
    match state.hub.recent_after(after, limit) {
        Some(changes) => Ok(changes),
        // Behind what the tail keeps (a burst larger than it holds): one read of its own.
        None => Ok(state
            .hub
            .read(Reader::CatchUp, after, limit)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect()),
    }
}

/// The changes of every tenant after a position, as Server-Sent Events.
///
/// Integration service tokens only. Opens with `retry: <ms>` (how long a client waits before it
/// reconnects), then one `event: change` per change (`id:` its position, `data:` the change as in
/// the JSON page), resumed after `Last-Event-ID` (or `after`; an empty `Last-Event-ID` counts as
/// absent); after 15 s without a change, `event: position` with `data: {"position": "..."}`. Events
/// are named: listen for `change` (`addEventListener("change")`), not `onmessage`. The stream ends
/// when the server stops or the subscriber falls too far behind (it does not read): the client
/// reconnects with `Last-Event-ID`. A stream counts against the caps on held requests (with long
/// polls and watches): beyond them, 429 `rate-limited` with `Retry-After`.
#[utoipa::path(
    tag = "feed",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position (instead of `after`); empty counts as absent"),
    ),
    responses((status = 200, description = "The stream of changes after `after`",
        content(
            (String = "text/event-stream", example = json!(
                "retry: 2000\n\nid: 43\nevent: change\ndata: {\"position\":\"43\",\"tenant_id\":\"acme-prod\",\"kind\":\"switched\",\"org_id\":\"0123456789ABCDEF01234567@AdobeOrg\",\"org_name\":\"Acme Creative\",\"previous_org_id\":\"FEDCBA9876543210FEDCBA98@AdobeOrg\",\"revision\":8,\"at\":\"2026-11-25T10:00:00Z\",\"by\":\"ABCDEF0123456789ABCDEF01@AdobeID\"}\n\nevent: position\ndata: {\"position\":\"43\"}\n\n"
            )),
        ))),
    security(("bearer" = [])),
)]
#[route("/creative-cloud-connections/changes/stream", method = "GET", method = "HEAD")]
pub async fn get_change_stream(
    integration: Integration,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q: StreamQuery = query(&req)?;
    let after = q
        .after
        .as_deref()
        .map(|a| parse_position("after", a))
        .transpose()?;
    let last_event_id = match req.headers().get("last-event-id") {
        None => None,
        Some(id) => {
            let id = id
                .to_str()
                .map_err(|_| ApiError::invalid(format!("Last-Event-ID is {NOT_A_POSITION}")))?
                .trim();
            // An empty one counts as absent (what a client sends before it got any id).
            (!id.is_empty())
                .then(|| parse_position("Last-Event-ID", id))
                .transpose()?
        }
    };
    let (what, from) = match last_event_id {
        Some(id) => ("Last-Event-ID", id),
        None => ("after", after.unwrap_or(0)),
    };
    let from = checked(&state, what, from).await?;
    let mut res = HttpResponse::Ok();
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    ))
    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
    // Proxies that buffer responses (nginx) pass this one on as it is written.
    .insert_header(("x-accel-buffering", HeaderValue::from_static("no")));
    if req.method() != Method::GET {
        return Ok(res.finish());
    }
    if *state.watchers.stopping().borrow() {
        // Stopping: the stream would end at once; the client reconnects to another replica.
        return Err(ApiError::TooManyHeld(RetryAfter::HELD_REQUESTS));
    }
    let place = state
        .watchers
        .hold(&integration.caller.key())
        .ok_or(ApiError::TooManyHeld(RetryAfter::HELD_REQUESTS))?;
    crate::telemetry::note_held(&req);
    let subscriber = Subscriber::new(
        &state.hub,
        from,
        Duration::from_millis(state.config.feed_heartbeat_ms),
    )
    .with_retry(STREAM_RETRY);
    // The place is held as long as the stream: dropped with it (also when the client goes away).
    let events = futures_util::stream::unfold((subscriber, place), |(mut subscriber, place)| async move {
        let event = subscriber.next().await?;
        Some((Ok::<_, std::convert::Infallible>(event), (subscriber, place)))
    });
    Ok(res.streaming(events))
}

//! `/creative-cloud-connections`: every tenant's connection, and the change feed after it (JSON,
//! long poll, or Server-Sent Events). Integrations only.

use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, route, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Integration;
use crate::domain::{OrgId, Revision, TenantId, UserId};
use crate::error::ApiError;
use crate::feed::Subscriber;
use crate::representation::Change;
use crate::state::AppState;
use crate::store::ListedTenant;

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
    pub org_id: Option<OrgId>,
    /// Its name, as IMS gave it when it was connected.
    pub org_name: Option<String>,
    /// The administrator who connected it.
    pub connected_by: Option<UserId>,
    /// When it was connected.
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
    /// Pass as `cursor` to get the next page; absent on the last page.
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

/// Where to read the feed from, and how long to wait.
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
    /// Seconds to hold the request, 1 to 60, while there is no change after `after`.
    #[param(minimum = 1, maximum = 60, example = 30)]
    pub wait: Option<u64>,
}

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

/// Refuses a position beyond the last one handed out (read now: any position a client was given
/// is at most the head of a later read).
async fn checked(state: &AppState, what: &str, position: i64) -> Result<i64, ApiError> {
    if position > 0 && position > state.store.change_head().await? {
        return Err(ApiError::invalid(format!("{what} is {NOT_A_POSITION}")));
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
            (checked(&state, "cursor", position).await?, Some(tenant))
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

/// The changes of every tenant after a position, in commit order.
///
/// Integration service tokens only. Every switch, disconnect and tenant removal is in the feed
/// once; positions follow commit order (a reader that has seen a position never later meets a
/// lower one); a read started after a change was acknowledged includes it. With `wait`, held while
/// there is nothing after `after`, answered as soon as a change commits on any replica.
///
/// With `Accept: text/event-stream`: Server-Sent Events, one `event: change` per change (`id:` its
/// position, `data:` the change as in the JSON answer), resumed after `Last-Event-ID` (or `after`);
/// after 15 s without a change, `event: position` with `data: {"position": "..."}`. A subscriber
/// that falls too far behind (does not read) has its stream closed; it resumes from its last id.
#[utoipa::path(
    tag = "feed",
    params(
        ChangesQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Server-Sent Events: resume after this position (instead of `after`)"),
    ),
    responses((status = 200, description = "The changes after `after` (JSON), or their stream (`text/event-stream`)",
        content(
            (ChangesPage = "application/json"),
            (String = "text/event-stream", example = json!(
                "id: 43\nevent: change\ndata: {\"position\":\"43\",\"tenant_id\":\"acme-prod\",\"kind\":\"switched\",\"org_id\":\"0123456789ABCDEF01234567@AdobeOrg\",\"org_name\":\"Acme Creative\",\"previous_org_id\":\"FEDCBA9876543210FEDCBA98@AdobeOrg\",\"revision\":8,\"at\":\"2026-11-25T10:00:00Z\",\"by\":\"ABCDEF0123456789ABCDEF01@AdobeID\"}\n\nevent: position\ndata: {\"position\":\"43\"}\n\n"
            )),
        ))),
    security(("bearer" = [])),
)]
#[route("/creative-cloud-connections/changes", method = "GET", method = "HEAD")]
pub async fn get_changes(
    _integration: Integration,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q: ChangesQuery = query(&req)?;
    let limit = limit_of(q.limit)?;
    let wait = match q.wait {
        None => None,
        Some(secs) if (1..=super::connection::MAX_WAIT_SECS).contains(&secs) => {
            Some(Duration::from_secs(secs))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "wait must be a whole number of seconds from 1 to 60",
            ));
        }
    };
    let after = q
        .after
        .as_deref()
        .map(|a| parse_position("after", a))
        .transpose()?;
    if req.method() == Method::GET && wants_event_stream(&req) {
        let resume = match req.headers().get("last-event-id") {
            Some(id) => Some(parse_position(
                "Last-Event-ID",
                id.to_str()
                    .map_err(|_| ApiError::invalid(format!("Last-Event-ID is {NOT_A_POSITION}")))?,
            )?),
            None => None,
        };
        let (what, from) = match resume {
            Some(id) => ("Last-Event-ID", id),
            None => ("after", after.unwrap_or(0)),
        };
        let from = checked(&state, what, from).await?;
        return Ok(event_stream(&state, from));
    }
    let after = after.unwrap_or(0);
    let deadline = wait
        .filter(|_| req.method() == Method::GET)
        .map(|w| tokio::time::Instant::now() + w);
    let watchers = &state.watchers;
    let (mut committed, mut stopping) = (watchers.commits(), watchers.stopping());
    let mut first = true;
    let changes = loop {
        // Marked seen before the read: a commit signalled from here on ends the wait below.
        committed.borrow_and_update();
        let changes = state.store.changes_after(after, limit).await?;
        if !changes.is_empty() {
            break changes;
        }
        if first {
            checked(&state, "after", after).await?;
            first = false;
        }
        let Some(deadline) = deadline else {
            break changes;
        };
        if tokio::time::Instant::now() >= deadline {
            break changes;
        }
        // Read again on a signal, and every few seconds anyway: a commit whose signal never
        // came (a stalled change channel; another process on one SQLite file) is still answered.
        let recheck = (tokio::time::Instant::now() + crate::feed::RECHECK).min(deadline);
        tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => break changes,
            changed = committed.changed() => if changed.is_err() { break changes },
            () = tokio::time::sleep_until(recheck) => {}
        }
    };
    let position = changes.last().map_or(after, |c| c.position);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(ChangesPage {
            changes: changes.iter().map(Change::from).collect(),
            position: position.to_string(),
        }))
}

fn wants_event_stream(req: &HttpRequest) -> bool {
    req.headers().get_all(header::ACCEPT).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
            })
        })
    })
}

fn event_stream(state: &AppState, from: i64) -> HttpResponse {
    let config = &state.config;
    let subscriber = Subscriber::new(&state.hub, from, Duration::from_millis(config.feed_heartbeat_ms));
    let events = futures_util::stream::unfold(subscriber, |mut subscriber| async move {
        let event = subscriber.next().await?;
        Some((Ok::<_, std::convert::Infallible>(event), subscriber))
    });
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // Proxies that buffer responses (nginx) pass this one on as it is written.
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(events)
}

//! Logging and the request context: a request id on every response, problem and log line, and one
//! log line per request. Tokens are never logged: nothing here reads the `Authorization` header.

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The header that carries the request id both ways.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Installs the global subscriber (`RUST_LOG`, default `info`). Safe to call more than once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// What the request line reports beyond method, route and status: set by the extractors.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The tenant in the path, once parsed.
    pub tenant_id: Option<String>,
    /// The token's client, once verified.
    pub client_id: Option<String>,
    /// A watch was held: its time is the wait the client asked for, not the service's latency,
    /// so it stays out of the latency histogram (`watch_delay_seconds` measures watches).
    pub held: bool,
}

/// Notes the tenant of the request (for its request line).
pub fn note_tenant(req: &actix_web::HttpRequest, tenant_id: &str) {
    req.extensions_mut()
        .get_or_insert(RequestFacts::default())
        .tenant_id = Some(tenant_id.to_owned());
}

/// Notes the client of the request (for its request line).
pub fn note_client(req: &actix_web::HttpRequest, client_id: &str) {
    req.extensions_mut()
        .get_or_insert(RequestFacts::default())
        .client_id = Some(client_id.to_owned());
}

/// Notes that the request is a held watch (kept out of the latency histogram).
pub fn note_held(req: &actix_web::HttpRequest) {
    req.extensions_mut().get_or_insert(RequestFacts::default()).held = true;
}

/// The id of the request being served, or `-` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// A caller-sent id is kept when it is sane (1 to 128 of `A-Z a-z 0-9 . _ - :`), so traces join
/// across services; anything else is replaced, never echoed.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    ok.then(|| s.to_owned())
}

/// The `method` label of a request: the methods the service routes, every other one `other`
/// (anyone can send a made-up method, and each label value is a series kept for the process's life).
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Middleware: assigns the request id, runs the request inside its span, logs one line at the end.
///
/// The span carries the request id only: every line logged while serving the request names it.
/// Route, tenant and client go on the request line alone; recording them into the span as well
/// would re-encode the span's JSON fields three times per request, the largest cost of the hot
/// path's logging (`docs/design.md`, "The hot path").
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    // Taken before the handlers run: HEAD on the documentation is served as GET.
    let method = req.method().clone();
    let method_label = method_label(&method);
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span))
        .await;
    let mut res = result?;
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or("-");
    let status = res.status();
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    let m = crate::metrics::metrics();
    // Labels hold only bounded values: a fixed method set, the route template (`-` when none
    // matched) and the status the service chose; never raw request data.
    m.http_requests
        .with_label_values(&[method_label, route, status.as_str()])
        .inc();
    // The request line carries its facts as top-level fields (not nested in a span), so a log
    // pipeline can index them; extractors noted the tenant and client on the request.
    {
        let extensions = res.request().extensions();
        let facts = extensions.get::<RequestFacts>();
        if !facts.is_some_and(|f| f.held) {
            m.http_latency
                .with_label_values(&[method_label, route])
                .observe(elapsed);
        }
        tracing::info!(
            request_id = %id,
            method = %method,
            route = %route,
            status = status.as_u16(),
            latency_ms = format_args!("{latency_ms:.2}"),
            tenant_id = facts.and_then(|f| f.tenant_id.as_deref()),
            client_id = facts.and_then(|f| f.client_id.as_deref()),
            "request"
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_kept() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(sane_request_id(&ok).as_deref(), Some("abc-123_x.y:z"));
        assert_eq!(sane_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(sane_request_id(&HeaderValue::from_static("")), None);
        let long = "a".repeat(129);
        assert_eq!(sane_request_id(&HeaderValue::from_str(&long).unwrap_or(ok)), None);
    }

    #[test]
    fn only_routed_methods_are_labelled_by_name() {
        use actix_web::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::POST), "other");
        let made_up = Method::from_bytes(b"ZQX001").unwrap_or(Method::TRACE);
        assert_eq!(method_label(&made_up), "other");
    }
}

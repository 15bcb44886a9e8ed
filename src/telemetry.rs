//! Logging, traces and the request context: a request id on every response, problem and log line,
//! and one log line per request. Tokens are never logged: nothing here reads the `Authorization`
//! header.
//!
//! Traces (OpenTelemetry) are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Otherwise nothing of them exists: no exporter, no
//! background thread, no subscriber layer, and every span helper below is one atomic load that
//! returns [`Span::none`] or leaves the request as it was.
//!
//! What a caller sends does not grow what we keep or send on: an attribute taken from the request
//! (path, query, user agent) is cut to [`MAX_ATTRIBUTE_BYTES`], and the caller's `tracestate` is
//! dropped where the `traceparent` is read (IMS gets our `traceparent` only; we add no entries of
//! our own). The export queue is the SDK's batch processor, bounded: at most 2,048 spans wait
//! (`OTEL_BSP_MAX_QUEUE_SIZE`; more are dropped while the collector is slow), exported 512 at a
//! time, each export bounded by `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s).

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TraceIncoming};
use crate::metrics::Metrics;

/// The header that carries the request id both ways.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The tracer provider, when traces are exported (set once, by [`init`]).
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// What a request's span does with the caller's `traceparent` (set once, by [`init`]).
static TRACE_INCOMING: OnceLock<TraceIncoming> = OnceLock::new();

/// The most bytes of an attribute value taken from the request (path, query, user agent): a
/// caller's kilobytes never reach the export queue.
pub const MAX_ATTRIBUTE_BYTES: usize = 256;

/// `value`, cut to at most [`MAX_ATTRIBUTE_BYTES`] at a character boundary.
fn bounded(value: &str) -> String {
    let mut end = value.len().min(MAX_ATTRIBUTE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// Whether traces are exported (the OTLP exporter was configured at start).
pub fn traces_on() -> bool {
    TRACER_PROVIDER.get().is_some()
}

/// Whether the standard OpenTelemetry variables ask for trace export: an OTLP endpoint is set,
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise.
fn export_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && !none && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OTLP/gRPC exporter and its provider: endpoint, headers, timeout, sampler
/// (`OTEL_TRACES_SAMPLER`/`_ARG`) and resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`)
/// as the standard variables say. Built inside the runtime (the gRPC client needs it).
fn tracer_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("cc-connection");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Installs the global subscriber (`RUST_LOG`, default `info`), with trace export when the
/// OpenTelemetry variables ask for it. Safe to call more than once. Connection errors any client
/// can cause are counted, not logged ([`crate::logfilter`]).
pub fn init(format: LogFormat, incoming: TraceIncoming) {
    let _ = TRACE_INCOMING.set(incoming);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if export_requested(|name| std::env::var(name).ok()) && TRACER_PROVIDER.get().is_none() {
        match tracer_provider() {
            Ok(provider) => {
                init_with_traces(format, filter, &provider);
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let _ = TRACER_PROVIDER.set(provider);
                return;
            }
            Err(e) => {
                init_logs(format, filter);
                tracing::error!(error = %e, "the OTLP trace exporter could not be built; traces are not exported");
                return;
            }
        }
    }
    init_logs(format, filter);
}

fn init_logs(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let counted = crate::logfilter::ClientErrorsCounted;
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(counted)
            .try_init(),
        LogFormat::Pretty => builder.compact().finish().with(counted).try_init(),
    };
}

/// Logs as [`init_logs`], plus the OpenTelemetry layer: the service's own spans (target
/// `cc_connection`, info and above) whatever `RUST_LOG` says, as `RUST_LOG` filters the log only.
fn init_with_traces(format: LogFormat, filter: EnvFilter, provider: &SdkTracerProvider) {
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cc-connection"))
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target("cc_connection", tracing::Level::INFO),
        );
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(crate::logfilter::ClientErrorsCounted)
        .with(otel)
        .with(logs.with_filter(filter))
        .try_init();
}

/// Exports the spans still buffered and stops the exporter (at exit; waits a few seconds at most).
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get()
        && let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
    {
        eprintln!("traces: the last spans could not be exported: {e}");
    }
}

/// The headers of an incoming request, for the W3C trace-context propagator.
struct RequestHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The server span of a request (traces on): continues the caller's `traceparent` (or, with
/// `CCC_TRACE_INCOMING=link`, starts a trace of its own linked to it), without the caller's
/// `tracestate`; carries the stable HTTP attributes, bounded; and names its trace and span ids for
/// the log lines.
fn server_span(req: &ServiceRequest, request_id: &str, method: &'static str) -> Span {
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(caller) = callers_span(req) {
        if TRACE_INCOMING.get().copied().unwrap_or_default() == TraceIncoming::Link {
            span.add_link(caller);
        } else {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
        }
    }
    span.set_attribute("http.request.method", method);
    span.set_attribute("url.path", bounded(req.path()));
    span.set_attribute("url.scheme", req.connection_info().scheme().to_owned());
    if let Some(q) = Some(req.query_string()).filter(|q| !q.is_empty()) {
        span.set_attribute("url.query", bounded(q));
    }
    if let Some(ua) = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.set_attribute("user_agent.original", bounded(ua));
    }
    span.set_attribute("network.protocol.version", protocol_version(req.version()));
    record_ids(&span);
    span
}

/// The caller's span from a valid `traceparent`, without its `tracestate`: the caller's entries
/// (up to 32 of them, kilobytes) are neither kept in our spans nor sent on to IMS.
fn callers_span(req: &ServiceRequest) -> Option<SpanContext> {
    let extracted =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&RequestHeaders(req.headers())));
    let caller = extracted.span().span_context().clone();
    caller.is_valid().then(|| {
        SpanContext::new(
            caller.trace_id(),
            caller.span_id(),
            caller.trace_flags(),
            true,
            opentelemetry::trace::TraceState::NONE,
        )
    })
}

/// Records the span's trace and span ids as its fields, so the log lines within it name them.
fn record_ids(span: &Span) {
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

fn protocol_version(v: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Ends the server span with what the response says (route, status; 5xx is an error).
fn finish_server_span(span: &Span, method: &'static str, route: Option<&str>, status: u16) {
    if let Some(route) = route {
        // The span has started (its ids are in the log): renamed on the span itself.
        span.context().span().update_name(format!("{method} {route}"));
        span.set_attribute("http.route", route.to_owned());
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
        span.set_attribute("error.type", status.to_string());
    }
}

/// The trace and span ids of `span`, for its request line.
fn ids_of(span: &Span) -> Option<(String, String)> {
    let context = span.context();
    let ids = context.span().span_context().clone();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// A client span for one IMS call (traces on; else [`Span::none`]).
pub fn ims_call_span(endpoint: &str, url: &str) -> Span {
    if !traces_on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "IMS call",
        otel.name = "GET",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    span.set_attribute("http.request.method", "GET");
    span.set_attribute("url.template", endpoint.to_owned());
    if let Ok(url) = url::Url::parse(url) {
        if let Some(host) = url.host_str() {
            span.set_attribute("server.address", host.to_owned());
        }
        if let Some(port) = url.port_or_known_default() {
            span.set_attribute("server.port", i64::from(port));
        }
    }
    record_ids(&span);
    span
}

/// Ends an IMS call's span with its outcome: anything but `ok` is an error of that type.
pub fn end_ims_call_span(span: &Span, outcome: &'static str) {
    if traces_on() && outcome != "ok" {
        span.record("otel.status_code", "ERROR");
        span.set_attribute("error.type", outcome);
    }
}

/// The current span's `traceparent` for an outgoing request (traces on); no `tracestate`, as we
/// keep no entries of our own and pass on none of a caller's.
pub fn outgoing_trace_headers() -> Vec<(String, String)> {
    if !traces_on() {
        return Vec::new();
    }
    let context = Span::current().context();
    let mut headers = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut headers));
    // The propagator writes an empty `tracestate` when there are no entries: nothing to send.
    headers
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
}

/// Records an outgoing call's response status on the current span (traces on).
pub fn note_response_status(status: u16) {
    if traces_on() {
        let span = Span::current();
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// An internal span (traces on; else [`Span::none`]): the switch transaction.
pub fn switch_span(operation: &'static str) -> Span {
    if !traces_on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "switch transaction",
        otel.name = operation,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    span.set_attribute("db.operation.name", operation);
    record_ids(&span);
    span
}

/// The span context of the current span, to link a batched read query to the read (traces on).
pub fn current_span_context() -> Option<SpanContext> {
    if !traces_on() {
        return None;
    }
    let ids = Span::current().context().span().span_context().clone();
    ids.is_valid().then_some(ids)
}

/// The span of one batched read query (traces on; else [`Span::none`]): a root of its own with a
/// link to each read it answers (it answers many requests, it has no one parent).
pub fn batch_query_span(reads: usize, links: impl IntoIterator<Item = SpanContext>) -> Span {
    if !traces_on() {
        return Span::none();
    }
    let span = tracing::info_span!(parent: None, "batched read query", otel.name = "SELECT tenant views", otel.kind = "client");
    span.set_attribute("db.operation.name", "SELECT");
    span.set_attribute(
        "db.operation.batch.size",
        i64::try_from(reads).unwrap_or(i64::MAX),
    );
    for link in links {
        span.add_link(link);
    }
    span
}

/// Links the current span (a read) to the batched read query that answered it.
pub fn link_to_query(query: SpanContext) {
    Span::current().add_link_with_attributes(
        query,
        vec![opentelemetry::KeyValue::new(
            "link.kind",
            "answered by batched read query",
        )],
    );
}

/// The span context of `span` (traces on and valid).
pub fn span_context_of(span: &Span) -> Option<SpanContext> {
    if !traces_on() {
        return None;
    }
    let ids = span.context().span().span_context().clone();
    ids.is_valid().then_some(ids)
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
    // Taken before the handlers run: HEAD on the documentation is served as GET.
    let method = req.method().clone();
    let method_label = method_label(&method);
    // The application's metrics (`startup.rs` puts them beside the state).
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let started = Instant::now();
    let (result, traced) = if traces_on() {
        let otel_method = if method_label == "other" {
            "_OTHER"
        } else {
            method_label
        };
        let span = server_span(&req, &id, otel_method);
        let result = REQUEST_ID
            .scope(id.clone(), next.call(req).instrument(span.clone()))
            .await;
        (result, Some((span, otel_method)))
    } else {
        let span = tracing::info_span!("request", request_id = %id);
        let result = REQUEST_ID
            .scope(id.clone(), next.call(req).instrument(span))
            .await;
        (result, None)
    };
    let mut res = result?;
    let route = res.request().match_pattern();
    let trace_ids = traced.as_ref().and_then(|(span, otel_method)| {
        finish_server_span(span, otel_method, route.as_deref(), res.status().as_u16());
        ids_of(span)
    });
    let route = route.as_deref().unwrap_or("-");
    let status = res.status();
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    // Labels hold only bounded values: a fixed method set, the route template (`-` when none
    // matched) and the status the service chose; never raw request data.
    if let Some(m) = &metrics {
        m.http_requests
            .with_label_values(&[method_label, route, status.as_str()])
            .inc();
    }
    // The request line carries its facts as top-level fields (not nested in a span), so a log
    // pipeline can index them; extractors noted the tenant and client on the request.
    {
        let extensions = res.request().extensions();
        let facts = extensions.get::<RequestFacts>();
        if let Some(m) = metrics.as_ref().filter(|_| !facts.is_some_and(|f| f.held)) {
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
            trace_id = trace_ids.as_ref().map(|(t, _)| t.as_str()),
            span_id = trace_ids.as_ref().map(|(_, s)| s.as_str()),
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
    fn request_attributes_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        assert_eq!(bounded(&"a".repeat(1_000)).len(), MAX_ATTRIBUTE_BYTES);
        // A three-byte character straddling the bound is left out whole.
        let text = format!("{}東京", "a".repeat(MAX_ATTRIBUTE_BYTES - 1));
        assert_eq!(bounded(&text), "a".repeat(MAX_ATTRIBUTE_BYTES - 1));
    }

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
    fn traces_are_exported_only_when_an_otlp_endpoint_is_set_and_not_disabled() {
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            export_requested(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        assert!(!with(&[]));
        assert!(!with(&[
            ("OTEL_SERVICE_NAME", "x"),
            ("OTEL_TRACES_SAMPLER", "always_on")
        ]));
        assert!(!with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        assert!(!with(&[endpoint, ("OTEL_SDK_DISABLED", "true")]));
        assert!(!with(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]));
        assert!(with(&[endpoint, ("OTEL_SDK_DISABLED", "false")]));
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

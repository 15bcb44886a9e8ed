//! Traces: the real `serve` binary, exporting over OTLP/gRPC to a real receiver (a fake
//! collector in this process) because the standard OpenTelemetry variables say so. The tracer
//! provider is process-wide, so each test runs a process of its own, configured like production.

use std::process::Command;
use std::time::{Duration, Instant};

use cc_connection::dev_ims::{DevIms, world};
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TENANT, TestApp, add_demo_tenant_at, admin_token, integration_token};
use crate::process::{ServeProcess, serve_command};

const ROUTE: &str = "/tenants/{tenant_id}/creative-cloud-connection";

/// A `serve` process on a fresh SQLite database with the demo tenant, its development IMS, and
/// (when `collector` is given) trace export to it.
struct Traced {
    ims: DevIms,
    replica: ServeProcess,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn traced_replica(collector: Option<&FakeCollectorServer>) -> Traced {
    traced_replica_with(collector, &[]).await
}

async fn traced_replica_with(collector: Option<&FakeCollectorServer>, env: &[(&str, &str)]) -> Traced {
    let ims = DevIms::start("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/traces.db?mode=rwc", dir.path().display());
    let mut cmd: Command = serve_command(&ims, &url);
    // Whatever the environment of the test run says, only this test's settings count.
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ] {
        cmd.env_remove(var);
    }
    if let Some(collector) = collector {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
            .env("OTEL_SERVICE_NAME", "cc-connection-test");
    }
    cmd.envs(env.iter().copied());
    let replica = ServeProcess::start(&mut cmd);
    let client = reqwest::Client::new();
    replica.wait_ready(&client).await;
    add_demo_tenant_at(&url).await;
    Traced {
        ims,
        replica,
        client,
        _dir: dir,
    }
}

impl Traced {
    fn call(&self, method: Method, token: &str, traceparent: &str) -> reqwest::RequestBuilder {
        self.client
            .request(
                method,
                format!("{}{}", self.replica.base(), TestApp::connection_path(TENANT)),
            )
            .bearer_auth(token)
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=abc")
    }

    /// SIGTERM, as Kubernetes stops a pod: the process exports what it buffered and exits.
    async fn stop(self) -> (DevIms, String) {
        let mut replica = self.replica;
        replica.terminate();
        let status = replica
            .exit_within(Instant::now(), Duration::from_secs(15), "serve did not exit")
            .await;
        assert!(status.success(), "serve exited with {status}");
        (self.ims, replica.kill_and_log())
    }
}

/// The spans received until `done` holds of them all (or 10 s passed).
async fn spans_until(
    collector: &mut FakeCollectorServer,
    done: impl Fn(&[ExportedSpan]) -> bool,
) -> Vec<ExportedSpan> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut spans = Vec::new();
    while !done(&spans) && Instant::now() < deadline {
        spans.extend(collector.exported_spans(1, Duration::from_millis(200)).await);
    }
    spans
}

fn trace_id(i: u32) -> String {
    format!("4bf92f3577b34da6a3ce929d{i:08x}")
}

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

/// The attribute's value as the receiver decoded it (`Some(AnyValue { .. StringValue("x") })`).
fn attr<'a>(span: &'a ExportedSpan, key: &str) -> &'a str {
    span.attributes.get(key).map_or("", String::as_str)
}

#[tokio::test]
async fn a_switch_continues_the_callers_trace_and_its_ims_calls_are_children_that_propagate_it() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let app = traced_replica(Some(&collector)).await;
    let trace = trace_id(1);
    let caller_span = "00f067aa0ba902b7";
    let res = app
        .call(
            Method::PUT,
            &admin_token(&app.ims),
            &traceparent(&trace, caller_span),
        )
        .json(&serde_json::json!({ "org_id": world::ACME_CREATIVE_ORG }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (ims, log) = app.stop().await;

    let spans = spans_until(&mut collector, |spans| {
        spans.iter().filter(|s| s.trace_id == trace).count() >= 4
    })
    .await;
    let in_trace: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();

    // One server span, child of the caller's span, with the stable HTTP attributes.
    let servers: Vec<&&ExportedSpan> = in_trace.iter().filter(|s| s.kind == "SPAN_KIND_SERVER").collect();
    assert_eq!(servers.len(), 1, "{in_trace:#?}");
    let server = servers[0];
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.name, format!("PUT {ROUTE}"));
    // The caller's tracestate is neither kept nor sent on.
    assert_eq!(server.trace_state, "");
    assert!(
        attr(server, "http.request.method").contains("\"PUT\""),
        "{server:#?}"
    );
    assert!(attr(server, "http.route").contains(ROUTE), "{server:#?}");
    assert!(
        attr(server, "http.response.status_code").contains("IntValue(201)"),
        "{server:#?}"
    );
    assert!(attr(server, "url.path").contains("/tenants/acme-prod/creative-cloud-connection"));

    // Each IMS call is a client span, child of the server span; IMS received its traceparent.
    let ims_calls: Vec<&&ExportedSpan> = in_trace
        .iter()
        .filter(|s| s.kind == "SPAN_KIND_CLIENT" && s.name == "GET")
        .collect();
    assert!(ims_calls.len() >= 2, "organizations and profile: {in_trace:#?}");
    assert_eq!(ims.faults().tracestates(), Vec::<(String, String)>::new());
    let received = ims.faults().traceparents();
    for call in &ims_calls {
        assert_eq!(call.parent_span_id, server.span_id, "{call:#?}");
        assert!(attr(call, "http.response.status_code").contains("IntValue(200)"));
        let sent = traceparent(&trace, &call.span_id);
        assert!(
            received
                .iter()
                .any(|(path, tp)| path.starts_with("/ims/") && *tp == sent),
            "IMS did not receive {sent}: {received:?}"
        );
    }

    // The switch transaction is a span of its own, inside the request.
    let switch = in_trace
        .iter()
        .find(|s| s.name == "switch")
        .expect("a switch transaction span");
    assert_eq!(switch.parent_span_id, server.span_id);

    // The request's log line names the trace and the server span, so logs and traces join.
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request" && l["request_id"] == request_id.as_str())
        .expect("the request line");
    assert_eq!(line["trace_id"], trace.as_str(), "{line}");
    assert_eq!(line["span_id"], server.span_id.as_str(), "{line}");
}

#[tokio::test]
async fn a_batched_read_query_links_to_every_read_it_answered_and_each_read_to_it() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let app = traced_replica(Some(&collector)).await;
    let token = integration_token(&app.ims);
    // Concurrent reads, each in a trace of its own: queued reads share a query.
    let reads = 24_u32;
    let answers = futures_util::future::join_all((0..reads).map(|i| {
        app.call(
            Method::GET,
            &token,
            &traceparent(&trace_id(100 + i), "00f067aa0ba902b7"),
        )
        .send()
    }))
    .await;
    for res in answers {
        // The demo tenant has no connection yet: a 404 read is a read all the same.
        assert_eq!(res.unwrap().status(), 404);
    }
    let (_ims, _log) = app.stop().await;

    let is_read = |s: &ExportedSpan| {
        s.kind == "SPAN_KIND_SERVER" && (100..100 + reads).any(|i| s.trace_id == trace_id(i))
    };
    let spans = spans_until(&mut collector, |spans| {
        spans.iter().filter(|s| is_read(s)).count() == reads as usize
    })
    .await;
    let read_spans: Vec<&ExportedSpan> = spans.iter().filter(|s| is_read(s)).collect();
    assert_eq!(read_spans.len(), reads as usize);
    let queries: Vec<&ExportedSpan> = spans.iter().filter(|s| s.name == "SELECT tenant views").collect();
    assert!(!queries.is_empty());
    for read in &read_spans {
        // The query that answered it links to it...
        let query = queries
            .iter()
            .find(|q| {
                q.links
                    .iter()
                    .any(|l| l.trace_id == read.trace_id && l.span_id == read.span_id)
            })
            .unwrap_or_else(|| panic!("no query links to the read {read:#?}"));
        // ...is a root of its own (it answers many requests, none is its parent)...
        assert_eq!(query.parent_span_id, "", "{query:#?}");
        assert!(attr(query, "db.operation.batch.size").contains("IntValue("));
        // ...and the read links back to it.
        assert!(
            read.links
                .iter()
                .any(|l| l.trace_id == query.trace_id && l.span_id == query.span_id),
            "the read does not name its query: {read:#?}"
        );
    }
    // Every link of a query is one of the reads it answered, and it counts them all.
    for query in &queries {
        let size = query.links.len();
        assert!(
            attr(query, "db.operation.batch.size").contains(&format!("IntValue({size})")),
            "{query:#?}"
        );
    }
}

#[tokio::test]
async fn with_export_off_nothing_is_sent_and_nothing_is_propagated() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    // The receiver is up, but the process is not told of it (no OTEL_EXPORTER_OTLP_ENDPOINT).
    let app = traced_replica(None).await;
    let trace = trace_id(7);
    let res = app
        .call(
            Method::PUT,
            &admin_token(&app.ims),
            &traceparent(&trace, "00f067aa0ba902b7"),
        )
        .json(&serde_json::json!({ "org_id": world::ACME_CREATIVE_ORG }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (ims, log) = app.stop().await;
    // The process has exited: whatever it would have sent has arrived by now.
    assert!(
        collector
            .exported_spans(1, Duration::from_millis(200))
            .await
            .is_empty()
    );
    assert!(ims.faults().requests_under("/ims/") > 0);
    assert_eq!(ims.faults().traceparents(), Vec::<(String, String)>::new());
    assert!(!log.contains(&trace), "the log names a trace while export is off");
    assert!(!log.contains("\"trace_id\""));
}

/// Item 6 of the fourth hardening round: what a caller sends does not grow our spans or reach IMS.
#[tokio::test]
async fn a_callers_tracestate_stays_here_and_request_attributes_are_cut_to_a_bound() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let app = traced_replica(Some(&collector)).await;
    let trace = trace_id(9);
    // The W3C maximum: 32 members; about 6.5 KB.
    let tracestate = (0..32)
        .map(|i| format!("v{i}={}", "x".repeat(200)))
        .collect::<Vec<_>>()
        .join(",");
    let long = "q".repeat(7_000);
    let path = format!("{}?wait=1&junk={long}", TestApp::connection_path(TENANT));
    let res = app
        .client
        .put(format!("{}{path}", app.replica.base()))
        .bearer_auth(admin_token(&app.ims))
        .header("traceparent", traceparent(&trace, "00f067aa0ba902b7"))
        .header("tracestate", &tracestate)
        .header("user-agent", &long)
        .json(&serde_json::json!({ "org_id": world::ACME_CREATIVE_ORG }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (ims, _log) = app.stop().await;
    assert!(ims.faults().requests_under("/ims/") > 0);
    assert_eq!(
        ims.faults().tracestates(),
        Vec::<(String, String)>::new(),
        "no tracestate to IMS"
    );

    let spans = spans_until(&mut collector, |spans| {
        spans
            .iter()
            .any(|s| s.trace_id == trace && s.kind == "SPAN_KIND_SERVER")
    })
    .await;
    let server = spans
        .iter()
        .find(|s| s.trace_id == trace && s.kind == "SPAN_KIND_SERVER")
        .expect("the server span");
    assert_eq!(server.trace_state, "");
    for key in ["url.query", "user_agent.original"] {
        let value = attr(server, key);
        assert!(value.contains("qqqq"), "{key}: {value}");
        // The decoded form adds a little around the value: far below the 7,000 bytes sent.
        assert!(value.len() < 400, "{key}: {} bytes", value.len());
    }
}

/// Item 6: for callers that are not trusted, `CCC_TRACE_INCOMING=link` starts a trace of our own
/// (our sampler decides, our ids in the logs) linked to the caller's.
#[tokio::test]
async fn with_trace_incoming_link_a_request_starts_its_own_trace_linked_to_the_callers() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let app = traced_replica_with(Some(&collector), &[("CCC_TRACE_INCOMING", "link")]).await;
    let trace = trace_id(11);
    let caller_span = "00f067aa0ba902b7";
    // sampled=0 from the caller: not ours to decide.
    let res = app
        .call(
            Method::GET,
            &integration_token(&app.ims),
            &format!("00-{trace}-{caller_span}-00"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (_ims, log) = app.stop().await;
    let is_linked = |s: &ExportedSpan| {
        s.kind == "SPAN_KIND_SERVER"
            && s.links
                .iter()
                .any(|l| l.trace_id == trace && l.span_id == caller_span)
    };
    let spans = spans_until(&mut collector, |spans| spans.iter().any(is_linked)).await;
    let server = spans
        .iter()
        .find(|s| is_linked(s))
        .expect("a server span linked to the caller's");
    assert_ne!(server.trace_id, trace);
    assert_eq!(server.parent_span_id, "");
    assert!(!log.contains(&trace), "the log names our trace, not the caller's");
}

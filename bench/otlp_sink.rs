//! An OTLP/gRPC receiver for `bench/traces.sh`: prints its endpoint, then once a second the
//! number of spans received so far (so the run shows that export happened).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use fake_opentelemetry_collector::FakeCollectorServer;

#[tokio::main]
async fn main() {
    let mut collector = FakeCollectorServer::start().await.expect("the receiver starts");
    println!("{}", collector.endpoint());
    let mut received = 0_usize;
    let mut printed = Instant::now();
    loop {
        // Drained often: the receiver's queue is short, and a full one would slow the exporter.
        received += collector.exported_spans(1, Duration::from_millis(50)).await.len();
        if printed.elapsed() >= Duration::from_secs(1) {
            println!("spans {received}");
            printed = Instant::now();
        }
    }
}

#!/usr/bin/env bash
# The webhooks benchmark (see bench/webhooks.rs): 100 endpoints on one replica, receivers answering
# in 5 ms, switches at 20/s; then 10 dead receivers beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p cc-connection --bin cc-connection
cargo build --release --locked -p cc-connection-bench --example bench_webhooks
exec target/release/examples/bench_webhooks "$@"

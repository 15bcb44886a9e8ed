#!/usr/bin/env bash
# The change feed benchmark (see bench/feed.rs): 1,000 SSE subscribers on one replica while
# tenants are switched at 20/s, then the catch-up read of 100,000 changes.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each subscriber is a connection, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked -p cc-connection --bin cc-connection
cargo build --release --locked -p cc-connection-bench --example bench_feed
exec target/release/examples/bench_feed "$@"

#!/usr/bin/env bash
# The watch benchmark (see bench/watch.rs): 10,000 idle watchers held while the hot GET is
# loaded by wrk, and the commit-to-answer delay of 1,000 watchers woken by one switch.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y -qq wrk; fi
fi
# Each watcher is a connection, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked -p cc-connection --bin cc-connection
cargo build --release --locked -p cc-connection-bench --example bench_watch
exec target/release/examples/bench_watch "$@"

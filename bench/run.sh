#!/usr/bin/env bash
# The benchmark (see bench/driver.rs): release builds, wrk, then one table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y -qq wrk; fi
fi
cargo build --release --locked -p cc-connection --bin cc-connection
cargo build --release --locked -p cc-connection-bench --example bench_baseline --example bench
exec target/release/examples/bench "$@"

#!/usr/bin/env bash
# What traces cost on the hot path (the GET of one tenant's connection): the service before the
# traces change (BENCH_BASE_BIN, a release build of that commit), this build with export off (the
# default), and this build exporting over OTLP to a local receiver at 1% sampling. Each binary runs
# `start-dev` (SQLite, the development IMS) pinned to core 0, `wrk -t1` loads it from core 1; the
# three alternate for BENCH_ROUNDS rounds of BENCH_SECONDS, so a busy machine slows each alike.
# Prints requests/s per round and the medians' ratios to the base.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BENCH_BASE_BIN:?BENCH_BASE_BIN: a release build of the service before the traces change}"
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-64}
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y -qq wrk; fi
fi
cargo build --release --locked -p cc-connection --bin cc-connection
cargo build --release --locked -p cc-connection-bench --example bench_otlp_sink
new_bin=$PWD/target/release/cc-connection
work=$(mktemp -d)
sink_pid=
trap '[ -n "$sink_pid" ] && kill $sink_pid 2>/dev/null; rm -rf "$work"' EXIT
taskset -c 1 target/release/examples/bench_otlp_sink >"$work/sink.txt" &
sink_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sink.txt" ] && break; sleep 0.1; done
endpoint=$(head -1 "$work/sink.txt")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run <label> <binary> [VAR=value...]: one round; prints requests/s.
run() {
  local label=$1 bin=$2; shift 2
  local dir port pid rps
  dir=$(mktemp -d -p "$work")
  port=$(free_port)
  (cd "$dir" && exec env CCC_LISTEN="127.0.0.1:$port" RUST_LOG=info "$@" taskset -c 0 "$bin" start-dev \
    >"$dir/out.txt" 2>/dev/null) &
  pid=$!
  for _ in $(seq 1 200); do grep -q '^INTEGRATION_TOKEN=' "$dir/out.txt" 2>/dev/null && break; sleep 0.1; done
  local admin integration
  admin=$(grep -o '^ADMIN_TOKEN=[^ ]*' "$dir/out.txt" | cut -d= -f2)
  integration=$(grep -o '^INTEGRATION_TOKEN=[^ ]*' "$dir/out.txt" | cut -d= -f2)
  curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"org_id":"C0FFEE00C0FFEE00C0FFEE00@AdobeOrg"}' "http://127.0.0.1:$port/tenants/acme-prod/creative-cloud-connection"
  rps=$(BENCH_TOKEN=$integration BENCH_TENANT=acme-prod taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" \
    -s bench/get_one.lua "http://127.0.0.1:$port" | awk '/^Requests\/sec:/ { print $2 }')
  kill -TERM $pid; wait $pid 2>/dev/null || true
  echo "$label $rps" | tee -a "$work/results.txt"
}

for round in $(seq 1 "$rounds"); do
  echo "round $round"
  run base "$BENCH_BASE_BIN"
  run off "$new_bin"
  run on_1pct "$new_bin" OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" \
    OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
done
sleep 2
echo "spans received by the OTLP receiver: $(grep '^spans' "$work/sink.txt" | tail -1 | cut -d' ' -f2)"
python3 - "$work/results.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rps = line.split()
    rows.setdefault(label, []).append(float(rps))
base = statistics.median(rows["base"])
for label in ("base", "off", "on_1pct"):
    med = statistics.median(rows[label])
    print(f"{label:8} median {med:9.0f} req/s  ratio to base {med / base:.3f}  rounds {rows[label]}")
PY

# Sourced by scripts that need a running start-dev: builds the binary, starts it on a free port in
# a temporary directory, waits for its banner, and sets base, admin and integration (the printed
# tokens). Stops it and removes the directory on exit.
cargo build --locked -q --bin cc-connection
dev_work=$(mktemp -d)
dev_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dev_root=$PWD
(cd "$dev_work" && CCC_LISTEN="127.0.0.1:$dev_port" RUST_LOG=warn exec "${CARGO_TARGET_DIR:-$dev_root/target}/debug/cc-connection" start-dev \
  >"$dev_work/out.txt" 2>"$dev_work/err.txt") &
dev_pid=$!
trap 'kill $dev_pid 2>/dev/null; wait $dev_pid 2>/dev/null; rm -rf "$dev_work"' EXIT
for _ in $(seq 1 100); do
  grep -q '^INTEGRATION_TOKEN=' "$dev_work/out.txt" 2>/dev/null && break
  sleep 0.1
done
admin=$(grep -o '^ADMIN_TOKEN=[^ ]*' "$dev_work/out.txt" | cut -d= -f2 || true)
integration=$(grep -o '^INTEGRATION_TOKEN=[^ ]*' "$dev_work/out.txt" | cut -d= -f2 || true)
if [ -z "$admin" ] || [ -z "$integration" ]; then
  echo "start-dev printed no tokens" >&2
  cat "$dev_work/err.txt" >&2
  exit 1
fi
base="http://127.0.0.1:$dev_port"

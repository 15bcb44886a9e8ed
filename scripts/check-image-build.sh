#!/usr/bin/env bash
# Proves that the container's build stage builds from exactly what deploy/Dockerfile copies: no
# registry for base images is reachable here, so its COPY lines are replayed into an empty folder
# and its RUN line runs there. The project's target/ is reused (CARGO_TARGET_DIR) to keep it quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# The build stage: from the first FROM to the next FROM.
stage=$(awk '/^FROM /{n++} n==1' deploy/Dockerfile)
workdir=$(printf '%s\n' "$stage" | awk '$1=="WORKDIR"{print $2}' | tail -n1)
[ -n "$workdir" ] || { echo "deploy/Dockerfile: the build stage has no WORKDIR" >&2; exit 1; }

while read -r _ args; do
  # shellcheck disable=SC2206
  parts=($args)
  dest=${parts[-1]}
  unset 'parts[-1]'
  case $dest in /*) target="$ctx$dest" ;; *) target="$ctx$workdir/$dest" ;; esac
  if [ "${#parts[@]}" -gt 1 ] || [[ $dest == */ ]]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; fi
  for src in "${parts[@]}"; do
    [ -e "$root/$src" ] || { echo "deploy/Dockerfile copies $src, which does not exist" >&2; exit 1; }
    cp -a "$root/$src" "$target"
  done
done < <(printf '%s\n' "$stage" | grep -E '^COPY ' | grep -v -- '--from')

build=$(printf '%s\n' "$stage" | sed -n 's/^RUN //p')
[ -n "$build" ] || { echo "deploy/Dockerfile: the build stage has no RUN line" >&2; exit 1; }
echo "in a folder holding only what deploy/Dockerfile copies: $build"
(cd "$ctx$workdir" && CARGO_TARGET_DIR="$root/target" bash -c "$build")

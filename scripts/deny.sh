#!/usr/bin/env bash
# Licences, banned crates and sources of every dependency (deny.toml), offline: CI reaches no
# advisory database. Installs cargo-deny from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$version"; then
  cargo install --locked --quiet "cargo-deny@$version"
fi
# --offline reads every crate of every target platform from the local registry, and a build fetches
# only this platform's: fetch them all first (the advisory database stays offline).
cargo fetch --locked --quiet
cargo deny --offline --locked check --hide-inclusion-graph licenses bans sources

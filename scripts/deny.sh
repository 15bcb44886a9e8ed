#!/usr/bin/env bash
# Licences, banned crates and sources of every dependency (deny.toml), offline: CI reaches no
# advisory database. Installs cargo-deny from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$version"; then
  cargo install --locked --quiet "cargo-deny@$version"
fi
cargo deny --offline --locked check --hide-inclusion-graph licenses bans sources

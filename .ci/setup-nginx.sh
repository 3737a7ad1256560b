#!/usr/bin/env bash
# Debian's nginx: the front server of stockade's accel-redirect mode in the
# end-to-end test, and the ceiling bench.serving measures against.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx
fi
nginx -v

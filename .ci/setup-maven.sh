#!/usr/bin/env bash
# The Maven side of the end-to-end tests: a real mvn (and the JDK it needs).
set -euo pipefail
if ! command -v mvn >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq maven
fi
mvn -v

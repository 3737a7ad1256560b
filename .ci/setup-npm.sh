#!/usr/bin/env bash
# The npm side of the end-to-end tests: a real registry server (Verdaccio) to
# stand in as the upstream, and pnpm beside the npm that ships with Node.
# Verdaccio 6.8 is the last release for Node 20; one of its dependencies asks
# for a node-fetch dist-tag that some registries do not serve, hence the pin.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq nodejs npm
fi

tools=.ci/.tools/npm
mkdir -p "$tools"
cat > "$tools/package.json" <<'JSON'
{
  "name": "stockade-e2e-npm-tools",
  "private": true,
  "dependencies": {"verdaccio": "6.8.0", "pnpm": "10.34.9", "@yarnpkg/cli-dist": "4.18.1"},
  "overrides": {"node-fetch": "2.7.0"}
}
JSON
npm install --prefix "$tools" --no-audit --no-fund --loglevel=error
"$tools/node_modules/.bin/verdaccio" --version
"$tools/node_modules/.bin/pnpm" --version
"$tools/node_modules/.bin/yarn" --version

#!/usr/bin/env bash
# Poetry for the end-to-end tests, in a virtual environment of its own under
# .ci/.tools/ (its dependencies stay out of the one the tests run in).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.ci/.tools/poetry
if [ ! -x "$tools/bin/poetry" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "poetry==2.5.1"
fi
"$tools/bin/poetry" --version

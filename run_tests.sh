#!/usr/bin/env bash
# The test command: the whole suite inside a network namespace that has only loopback, so
# Ray, the moto S3 server and every test talk to 127.0.0.1 and nothing else.
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c "ip link set lo up && exec $PY -m pytest -q -p no:cacheprovider $*"
else
  echo "warning: cannot create a loopback-only network namespace; running tests in the host network" >&2
  exec $PY -m pytest -q -p no:cacheprovider "$@"
fi

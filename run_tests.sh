#!/usr/bin/env bash
# The test command: the whole suite inside a network namespace that has only loopback, so
# Ray, the moto S3 server and every test talk to 127.0.0.1 and nothing else.
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
# the whole suite also lists its slowest tests (the suite's time is a budget: README)
if [ $# -eq 0 ]; then set -- --durations=20; fi
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  # arguments pass through as they are ("$@", not re-split: -k "a or b" stays one argument)
  exec unshare -n sh -c 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider "$@"' "$PY" "$@"
else
  echo "warning: cannot create a loopback-only network namespace; running tests in the host network" >&2
  exec $PY -m pytest -q -p no:cacheprovider "$@"
fi

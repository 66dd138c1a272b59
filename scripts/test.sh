#!/usr/bin/env bash
# Every test. First the workspace's tests (unit, conformance, black-box API) with the servers on
# the embedded store, the store conformance suite also on MongoDB; then the black-box API suite
# again with every server on MongoDB; then the pages in a real browser (tests/browser: Node.js
# with playwright-core driving Debian's Chromium, `apt-get install chromium`; skipped with a note
# when either is missing, unless --require-browser).
#
# MongoDB is CLAWJOBS_TEST_MONGODB_URI when set (a real replica set works as well), else the
# stand-in `secantusd-py` started here (pip install secantusdb==0.7.0b3), else its suites are
# skipped with a note, unless --require-mongodb (CI) makes that an error.
# Other arguments go to `cargo test` (e.g. --locked).
set -euo pipefail
cd "$(dirname "$0")/.."

require=0
require_browser=0
while [[ "${1:-}" == --require-* ]]; do
  case "$1" in
    --require-mongodb) require=1 ;;
    --require-browser) require_browser=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

mongo_pid=
cleanup() { [[ -n "$mongo_pid" ]] && kill "$mongo_pid" 2>/dev/null || true; }
trap cleanup EXIT

# The stand-in's launcher, or its module when pip put the launcher off the PATH. `exec`: run in
# the background, the function's subshell becomes the server, so that $! is the server's pid and
# the trap below stops it.
secantusd() {
  if command -v secantusd-py >/dev/null; then
    exec secantusd-py "$@"
  else
    exec python3 -c 'import sys; from secantus.cli import main; sys.argv[0] = "secantusd-py"; sys.exit(main())' "$@"
  fi
}

if [[ -z "${CLAWJOBS_TEST_MONGODB_URI:-}" ]] &&
  { command -v secantusd-py >/dev/null || python3 -c 'import secantus' 2>/dev/null; }; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log="${TMPDIR:-/tmp}/secantusd-$port.log"
  secantusd --host 127.0.0.1 --port "$port" --storage-path :memory: --log-level WARNING >"$log" 2>&1 &
  mongo_pid=$!
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  export CLAWJOBS_TEST_MONGODB_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
  echo "MongoDB stand-in (secantusdb) on port $port, log in $log"
fi

if [[ -n "${CLAWJOBS_TEST_MONGODB_URI:-}" ]]; then
  # A MongoDB case that cannot reach it fails instead of skipping.
  export CLAWJOBS_REQUIRE_MONGODB=1
elif ((require)); then
  echo "no MongoDB: set CLAWJOBS_TEST_MONGODB_URI or pip install secantusdb==0.7.0b3" >&2
  exit 1
else
  echo "note: no MongoDB (set CLAWJOBS_TEST_MONGODB_URI or pip install secantusdb==0.7.0b3): its suites are skipped" >&2
fi

cargo test --workspace "$@"
if [[ -n "${CLAWJOBS_TEST_MONGODB_URI:-}" ]]; then
  echo "== the black-box API suite on MongoDB"
  # --workspace: the same feature resolution as above, so nothing is built again.
  CLAWJOBS_TEST_STORE=mongodb cargo test --workspace --test api "$@"
fi

chromium=${CHROMIUM:-$(command -v chromium || true)}
if [[ -n "$chromium" ]] && command -v node >/dev/null; then
  echo "== the pages in Chromium ($chromium), screenshots in target/screenshots/"
  (cd tests/browser && { [[ -d node_modules/playwright-core ]] || npm ci --no-audit --no-fund --loglevel=error; } &&
    CHROMIUM="$chromium" CLAWJOBS_BIN="$PWD/../../target/debug/clawjobs" npm test --silent)
elif ((require_browser)); then
  echo "no browser suite: it needs Node.js and Chromium (apt-get install chromium)" >&2
  exit 1
else
  echo "note: no Chromium or Node.js (apt-get install chromium): the browser suite is skipped" >&2
fi

#!/usr/bin/env bash
# Benchmark (not a test): full lifecycles per second over HTTP and post-to-claim latency, against
# a release build on the embedded store with durable commits, on a fresh data directory.
#
#   scripts/bench.sh [workers] [posters] [seconds] [runs]
#
# Each mode runs `runs` times (default 3) on a fresh server; the median run is what to quote.
# The load generator (`clawjobs simulate`) shares the machine with the server, as a client would.
#
# STORE=mongodb://… runs every server on MongoDB instead (a fresh database per run; e.g. the
# test stand-in: secantusd-py --port 27017 --storage-path :memory:, then
# STORE="mongodb://127.0.0.1:27017/?replicaSet=secantus").
#
# ONLY=priority runs just the tier-priority measurement (the share of high-value tasks that reach
# trusted workers, with qa.fairness_random 0, the shipped 0.1, and 1 = priority off).
#
# ONLY=lifecycles runs just the lifecycle modes (the figure quoted as a ratio). When a PostgreSQL
# server answers on $PGHOST (see scripts/baseline/README.md), the baseline
# scripts/baseline/pg-skip-locked/run.sh runs `runs` times before and after the lifecycles, back
# to back, and the ratio of the medians is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-32}; POSTERS=${2:-16}; SECONDS_=${3:-10}; RUNS=${4:-3}
ONLY=${ONLY:-all}
export PGHOST=${PGHOST:-/var/run/postgresql} PGDATABASE=${PGDATABASE:-baseline}
baseline_up() { command -v pgbench >/dev/null && psql -qtAc 'select 1' >/dev/null 2>&1; }
baseline() {
  for _ in $(seq "$RUNS"); do
    # Its closing row count may fail once pgbench is done; the tps line is what counts here.
    { scripts/baseline/pg-skip-locked/run.sh 16 "$SECONDS_" 2>/dev/null || true; } \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
  done
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
cargo build --release --quiet
BIN=target/release/clawjobs
export CLAWJOBS_ADMIN_TOKEN=cja_bench_admin CLAWJOBS_LOG=warn

STORE=${STORE:-}
# The store flags of one fresh server: a new data directory, or a new MongoDB database.
store_flags() {
  if [[ -z "$STORE" ]]; then
    echo --data-dir "$DATA"
  else
    local rest=${STORE#*://} query=
    [[ "$STORE" == *\?* ]] && query="?${STORE#*\?}"
    echo --store "${STORE%%://*}://${rest%%/*}/bench_$(date +%s%N)$query"
  fi
}
serve() {
  DATA=$(mktemp -d)
  # shellcheck disable=SC2046 # the flags are words without spaces
  "$BIN" serve --bind 127.0.0.1:0 $(store_flags) > "$DATA/out" 2>"$DATA/err" &
  PID=$!
  for _ in $(seq 400); do grep -q listening "$DATA/out" 2>/dev/null && break; sleep 0.05; done
  URL=$(sed -n 's/^clawjobs listening on //p' "$DATA/out")
}
stop() { kill -TERM "$PID"; wait "$PID" || true; rm -rf "$DATA"; }

priority() {
  echo "== tier priority: half of $WORKERS workers trusted, one high-value task to one cheap, 1000 high-value claims"
  for fairness in 0 0.1 1; do
    for run in $(seq "$RUNS"); do
      serve
      "$BIN" simulate --mode priority --url "$URL" --workers "$WORKERS" --samples 1000 --fairness "$fairness"
      stop
    done
  done
}
if [ "$ONLY" = priority ]; then priority; exit 0; fi

BASE=()
if baseline_up; then
  echo "== baseline: PostgreSQL SKIP LOCKED lifecycles/s (before)"
  mapfile -t -O "${#BASE[@]}" BASE < <(baseline)
  printf '   %s\n' "${BASE[@]}"
else
  echo "== (no PostgreSQL on $PGHOST: the baseline ratio is skipped; see scripts/baseline/README.md)"
fi

echo "== store: ${STORE:-embedded (a fresh data directory per run)}"
echo "== full lifecycles (post → claim → submit → settled), $WORKERS workers, $POSTERS posters, ${SECONDS_}s"
OURS=()
for run in $(seq "$RUNS"); do
  serve
  line=$("$BIN" simulate --mode lifecycles --url "$URL" --workers "$WORKERS" --posters "$POSTERS" --seconds "$SECONDS_")
  echo "$line"
  OURS+=("$(sed -n 's/^lifecycles: \([0-9]*\)\/s mean.*/\1/p' <<<"$line")")
  echo "   server RSS: $(awk '/VmHWM/ {print $2/1024 " MiB peak"}' /proc/$PID/status)"
  stop
done

if baseline_up; then
  echo "== baseline: PostgreSQL SKIP LOCKED lifecycles/s (after)"
  mapfile -t -O "${#BASE[@]}" BASE < <(baseline)
  printf '   %s\n' "${BASE[@]:$RUNS}"
  ours=$(printf '%s\n' "${OURS[@]}" | median)
  base=$(printf '%s\n' "${BASE[@]}" | median)
  echo "== ratio: median $ours lifecycles/s ÷ baseline median $base = $(awk -v a="$ours" -v b="$base" 'BEGIN {printf "%.2f", a / b}')×"
fi

echo "== the same with the seed's QA rates (shadows, spot-checks: platform-paid copies in the queue)"
for run in $(seq "$RUNS"); do
  serve
  "$BIN" simulate --mode lifecycles --qa seed --url "$URL" --workers "$WORKERS" --posters "$POSTERS" --seconds "$SECONDS_"
  stop
done

[ "$ONLY" = lifecycles ] && exit 0

priority

echo "== post-to-claim latency, $WORKERS parked workers"
for run in $(seq "$RUNS"); do
  serve
  "$BIN" simulate --mode latency --url "$URL" --workers "$WORKERS" --samples 2000
  stop
done

# Real time (issue 3). The workplace caps a process at 20,000 open files, so idle sessions are
# measured at WS_IDLE (default 15,000) and the memory per session is reported with the estimate
# for 50,000.
WS_IDLE=${WS_IDLE:-15000}; SSE_SUBS=${SSE_SUBS:-10000}
echo "== post-to-delivery latency to WebSocket workers, $WORKERS ready sockets"
for run in $(seq "$RUNS"); do
  serve
  "$BIN" simulate --mode ws-latency --url "$URL" --workers "$WORKERS" --samples 2000
  stop
done
echo "== idle WebSocket sessions ($WS_IDLE) and server memory"
serve
"$BIN" simulate --mode ws-idle --url "$URL" --connections "$WS_IDLE" --server-pid "$PID"
stop
echo "== SSE fan-out latency to $SSE_SUBS subscribers of the public feed"
for run in $(seq "$RUNS"); do
  serve
  "$BIN" simulate --mode sse-fanout --url "$URL" --connections "$SSE_SUBS" --samples 20
  stop
done

#!/usr/bin/env bash
# Benchmark (not a test): are two builds equally fast? Lifecycles per second of each binary, in
# interleaved rounds, so that the drift of a shared machine (which moves a whole run by 10–20%
# between one minute and the next) falls on every build alike.
#
#   scripts/bench-compare.sh [rounds] BIN_A BIN_B [BIN_C…]
#
# Each round runs the PostgreSQL baseline once (when one answers on $PGHOST, see
# scripts/baseline/README.md), then each binary once on a fresh embedded store (32 workers,
# 16 posters, 10 s). At the end: each binary's median, its ratio to the baseline's median, and the
# median of the per-round differences to BIN_A (the paired figure: it cancels the drift).
#
# To compare with an older commit:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#   cargo build --release && cp target/release/clawjobs /tmp/new
#   scripts/bench-compare.sh 9 /tmp/old/target/release/clawjobs /tmp/new
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=5
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
(( $# >= 2 )) || { echo "usage: $0 [rounds] BIN_A BIN_B [BIN_C…]" >&2; exit 2; }
export PGHOST=${PGHOST:-/var/run/postgresql} PGDATABASE=${PGDATABASE:-baseline}
export CLAWJOBS_ADMIN_TOKEN=cja_bench_admin CLAWJOBS_LOG=warn
baseline_up() { command -v pgbench >/dev/null && psql -qtAc 'select 1' >/dev/null 2>&1; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Lifecycles/s of one binary on a fresh server.
lifecycles() {
  local bin=$1 data pid url
  data=$(mktemp -d)
  "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$data/out" 2>"$data/err" &
  pid=$!
  for _ in $(seq 400); do grep -q listening "$data/out" 2>/dev/null && break; sleep 0.05; done
  url=$(sed -n 's/^clawjobs listening on //p' "$data/out")
  "$bin" simulate --mode lifecycles --url "$url" --workers 32 --posters 16 --seconds 10 \
    | sed -n 's/^lifecycles: \([0-9]*\)\/s mean.*/\1/p'
  kill -TERM "$pid"; wait "$pid" || true; rm -rf "$data"
}

OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
  line="round $round:"
  if baseline_up; then
    pg=$({ scripts/baseline/pg-skip-locked/run.sh 16 10 2>/dev/null || true; } \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$pg" >>"$OUT/pg"; line="$line baseline $pg"
  fi
  for i in $(seq $#); do
    n=$(lifecycles "${!i}")
    echo "$n" >>"$OUT/$i"; line="$line  [$i] $n"
  done
  echo "$line"
done

base=$( [[ -s "$OUT/pg" ]] && median <"$OUT/pg" || echo nan)
for i in $(seq $#); do
  m=$(median <"$OUT/$i")
  ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {if (b == "nan") print "-"; else printf "%.2f×", a / b}')
  paired=$(paste "$OUT/$i" "$OUT/1" | awk '{print $1 - $2}' | median)
  echo "[$i] ${!i}: median $m lifecycles/s, ratio to baseline median $base: $ratio, paired difference to [1]: $paired/s"
done

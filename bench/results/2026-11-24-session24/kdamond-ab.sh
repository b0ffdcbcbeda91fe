#!/usr/bin/env bash
# usage: kdamond-ab.sh RATE ROUNDS
# The broker's half-peak latency (latency-split.sh RATE 1, broker on CPU
# 1) with the host's DAMON thread (kdamond, proactive reclaim set up by
# this VM's platform) free to run on either CPU, as found, and kept on
# CPU 0 (the generator's), alternating within each round. Restores the
# affinity found at the start.
RATE=${1:?rate}; ROUNDS=${2:-3}
cd "$(git rev-parse --show-toplevel)"
pids=$(pgrep -x 'kdamond\.[0-9]+')
declare -A was
for p in $pids; do was[$p]=$(taskset -p "$p" | sed 's/.*: //'); done
for r in $(seq "$ROUNDS"); do
  for where in both cpu0; do
    for p in $pids; do
      if [ $where = cpu0 ]; then taskset -p 1 "$p" >/dev/null; else taskset -p "${was[$p]}" "$p" >/dev/null; fi
    done
    echo "## round $r, kdamond on $where"
    bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1 | grep -E '^produce ack|quantile="0.99"'
  done
done
for p in $pids; do taskset -p "${was[$p]}" "$p" >/dev/null; done

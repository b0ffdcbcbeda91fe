#!/usr/bin/env bash
# usage: qd-ab.sh RATE ROUNDS N...
# The broker's half-peak latency with no limit on a core's segment writes
# in flight and with at most N (an experiment build reading XX_WRITE_QD,
# write-qd.patch),
# alternating within each round: latency-split.sh RATE 1 per setting.
RATE=${1:?rate}; ROUNDS=${2:-3}; shift 2
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for n in none "$@"; do
    echo "## round $r, writes in flight per core: $n"
    if [ "$n" = none ]; then
      bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    else
      XX_WRITE_QD=$n bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    fi | grep -E '^produce|quantile="0.99"'
  done
done

#!/usr/bin/env bash
# usage: par-ab.sh RATE ROUNDS
# What the serial write chain of a partition costs: an experiment build
# (XX_PAR, parallel-writes.patch, which also holds append-count.patch;
# unsafe,
# measurement only) submits an append's write at once
# even while an earlier round of the same log is in flight, and lets two
# writes of the partial tail sector overlap; rounds still publish in
# order. Alternates it with the committed behaviour: latency-split.sh
# RATE 1 per setting (BATCH as exported).
RATE=${1:?rate}; ROUNDS=${2:-3}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for p in serial parallel; do
    echo "## round $r, $p"
    if [ $p = serial ]; then
      bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    else
      XX_PAR=1 bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    fi | grep -E '^produce ack|quantile="0.99"'
    grep -a XX target/bench-tmp/latency-split.log | tail -1
  done
done

#!/usr/bin/env bash
# usage: cpu-ab.sh RATE ROUNDS
# The broker's half-peak latency on CPU 1 (the disk interrupt's CPU, as
# in every other script) and on CPU 0 with the generator on CPU 1,
# alternating within each round: latency-split.sh RATE 1 per placement.
RATE=${1:?rate}; ROUNDS=${2:-3}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for b in 1 0; do
    echo "## round $r, broker on CPU $b"
    BROKER_CPU=$b GEN_CPU=$((1 - b)) bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1 | grep -E '^produce ack|quantile="0.99"'
  done
done

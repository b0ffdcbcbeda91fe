#!/usr/bin/env bash
# usage: sink-vs-broker.sh PAIRS [RATE] [BATCH]
# The broker with the ack journal against the generator's own floor, in
# alternation: `null-sink.sh 1` (an endpoint that acknowledges at once and
# keeps nothing, on CPU 1) and `shape.sh` (the broker on CPU 1), the same
# generator flags, PAIRS times.
PAIRS=${1:-4}; RATE=${2:-559MiB}; BATCH=${3:-64KiB}
cd "$(git rev-parse --show-toplevel)"
S=bench/results/2026-11-24-session26
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD), $RATE $BATCH"
for _ in $(seq "$PAIRS"); do
  printf "sink   "; bash $S/null-sink.sh 1 "$RATE" "$BATCH" | grep "^produce ack"
  printf "broker "; bash bench/results/2026-11-24-session25/shape.sh "$RATE" 2 8 16 "$BATCH" | grep "^produce ack"
done

#!/usr/bin/env bash
# usage: ring-ab.sh PAIRS [RATE] [BATCH]
# The ack journal's ring size at half of the 256 KiB peak: 16 MiB (the
# default) against 64 MiB per core, alternately, PAIRS times. Each run is
# session 25's `shape.sh`, printing the journal's counters too: the broker
# on CPU 1, the generator on CPU 0, 2 producers,
# 8 partitions, 16 in flight, 10 s after 3 s of warm-up.
PAIRS=${1:-3}; RATE=${2:-1076MiB}; BATCH=${3:-256KiB}
cd "$(git rev-parse --show-toplevel)"
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD), $RATE $BATCH"
for _ in $(seq "$PAIRS"); do
  for mib in 16 64; do
    printf "ring %2d MiB " $mib
    SERVE_ARGS="--ack-journal-bytes $((mib << 20))" METRICS='^spindle_ack_journal_(full|appends)_total' bash bench/results/2026-11-24-session25/shape.sh $RATE 2 8 16 $BATCH | \
      grep -E "ack latency|request_total" | tr '\n' ' ' | \
      sed 's/produce ack latency *(ms, [0-9]* samples)://; s/request_total_{api="Produce",quantile="0.99"}/produce p99/; s/request_total_{api="Produce",quantile="0.999"}/p99.9/'
    echo
  done
done

#!/usr/bin/env bash
# usage: ab-broker.sh RATE [PAIRS] [ACKS]
# `spindle serve --cores 1-1` with the I/O doorbell, then without
# (SPINDLE_IO_DOORBELL=0), alternating: lat.sh of session 7 (generator on
# CPU 0, acks=ACKS (default 1), 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms)
# at RATE (max for the peak).
RATE=$1; PAIRS=${2:-3}; ACKS=${3:-1}
cd "$(git rev-parse --show-toplevel)"
for pair in $(seq "$PAIRS"); do
  for bell in 1 0; do
    echo "### pair $pair SPINDLE_IO_DOORBELL=$bell acks=$ACKS rate $RATE ($(date -u +%H:%M:%S) UTC)"
    SPINDLE_IO_DOORBELL=$bell TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh "$RATE" "$ACKS" 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

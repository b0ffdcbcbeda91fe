#!/usr/bin/env bash
# usage: ab-nudge-broker.sh RATE [PAIRS] [ACKS]
# lat.sh of session 7 (`spindle serve --cores 1-1`, generator on CPU 0,
# 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms) at RATE (max
# for the peak), alternating the I/O nudge on and off (SPINDLE_IO_NUDGE=0).
RATE=$1; PAIRS=${2:-3}; ACKS=${3:-1}
cd "$(git rev-parse --show-toplevel)"
for pair in $(seq "$PAIRS"); do
  for n in 1 0; do
    echo "### pair $pair SPINDLE_IO_NUDGE=$n acks=$ACKS rate $RATE ($(date -u +%H:%M:%S) UTC)"
    SPINDLE_IO_NUDGE=$n TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh "$RATE" "$ACKS" 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

#!/usr/bin/env bash
# usage: ab-quota.sh RATE A B [PAIRS]
# Alternating pairs of lat.sh (session 7: broker on CPU 1, generator on
# CPU 0, acks=1, 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms)
# with `spindle serve --task-quota-us A`, then B.
RATE=$1; A=$2; B=$3; PAIRS=${4:-3}
cd "$(git rev-parse --show-toplevel)"
for pair in $(seq "$PAIRS"); do
  for q in "$A" "$B"; do
    echo "### pair $pair task-quota-us=$q acks=1 rate $RATE"
    TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh "$RATE" 1 --task-quota-us "$q" 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

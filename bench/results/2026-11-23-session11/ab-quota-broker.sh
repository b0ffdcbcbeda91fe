#!/usr/bin/env bash
# usage: ab-quota-broker.sh RATE [PAIRS] [ACKS] [QUOTAS...]
# lat.sh of session 7 (`spindle serve --cores 1-1`, generator on CPU 0,
# 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms) at RATE (max
# for the peak) with each `--task-quota-us` in turn (default: glommio's
# 100 ms, 500 us, 200 us), repeated PAIRS times.
RATE=$1; PAIRS=${2:-3}; ACKS=${3:-1}; shift 3 2>/dev/null || shift $#
QUOTAS=${*:-100000 500 200}
cd "$(git rev-parse --show-toplevel)"
for pair in $(seq "$PAIRS"); do
  for q in $QUOTAS; do
    echo "### round $pair task-quota-us=$q acks=$ACKS rate $RATE ($(date -u +%H:%M:%S) UTC)"
    TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh "$RATE" "$ACKS" --task-quota-us "$q" 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

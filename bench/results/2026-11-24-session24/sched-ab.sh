#!/usr/bin/env bash
# usage: sched-ab.sh RATE ROUNDS [SCHEDULERS...]
# The broker's half-peak latency under each block-layer I/O scheduler of
# the data disk (default: mq-deadline, this host's default, and none),
# alternating within each round: latency-split.sh RATE 1 per scheduler.
# Restores the scheduler found at the start.
RATE=${1:?rate}; ROUNDS=${2:-3}; shift 2
SCHEDS=${*:-mq-deadline none}
cd "$(git rev-parse --show-toplevel)"
Q=/sys/block/vda/queue/scheduler
was=$(sed 's/.*\[\(.*\)\].*/\1/' $Q)
for r in $(seq "$ROUNDS"); do
  for s in $SCHEDS; do
    echo "$s" > $Q
    echo "## round $r, scheduler $(cat $Q)"
    bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1 | grep -E '^produce ack|quantile="0.99"'
  done
done
echo "$was" > $Q

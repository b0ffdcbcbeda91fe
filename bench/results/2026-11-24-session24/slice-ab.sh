#!/usr/bin/env bash
# usage: slice-ab.sh RATE ROUNDS SLICE_US...
# The broker's half-peak latency with its executor threads' EEVDF slice
# at the kernel default and at each SLICE_US (sched_setattr's
# sched_runtime for SCHED_OTHER, Linux 6.12+), alternating within each
# round: latency-split.sh RATE 1 per setting. XX_SLICE_US is read by an
# experiment build (slice.patch); "default" leaves the slice alone.
RATE=${1:?rate}; ROUNDS=${2:-3}; shift 2
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for s in default "$@"; do
    echo "## round $r, slice $s"
    if [ "$s" = default ]; then
      bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    else
      XX_SLICE_US=$s bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    fi | grep -E '^produce ack|quantile="0.99"'
  done
done

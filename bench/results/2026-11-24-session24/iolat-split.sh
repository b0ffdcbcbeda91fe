#!/usr/bin/env bash
# usage: iolat-split.sh RATE RUNS
# glommio's own split of the broker's I/O latency at RATE, with an
# experiment build (iolat.patch): XX_IOLAT makes each core record
# glommio's per-request timestamps (`record_io_latencies`, with segment
# writes included) and print, every 2 s, the main ring's quantiles
# (p50/p90/p99/p99.9, µs) of three stages since the last print:
#   pre:  the request queued in glommio until handed to the kernel;
#   io:   handed to the kernel until glommio reaped its completion;
#   post: reaped until the waiting task ran.
# Runs latency-split.sh RATE 1 and prints the windows of the measured part.
RATE=${1:?rate}; RUNS=${2:-1}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$RUNS"); do
  XX_IOLAT=1 bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1 | grep -E '^produce ack|disk_write_latency_seconds\{quantile="0.99'
  grep -a 'XX main' target/bench-tmp/latency-split.log | sed -n '3,6p'
done

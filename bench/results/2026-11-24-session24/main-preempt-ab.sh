#!/usr/bin/env bash
# usage: main-preempt-ab.sh RATE ROUNDS
# Whether a busy core reaps finished disk writes late: an experiment build
# (main-preempt.patch and iolat.patch) with XX_MAIN_PREEMPT makes a
# completion on glommio's main ring preempt the running task queue, as
# one on its latency ring does, so the reactor reaps it after the current
# task instead of at its next poll. Alternates it with the committed
# behaviour, both with XX_IOLAT (glommio's split, see iolat-split.sh):
# latency-split.sh RATE 1 per setting (BATCH as exported), then the
# glommio windows of the measured part.
RATE=${1:?rate}; ROUNDS=${2:-3}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for m in poll preempt; do
    echo "## round $r, main-ring completions: $m"
    if [ $m = poll ]; then
      XX_IOLAT=1 bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    else
      XX_IOLAT=1 XX_MAIN_PREEMPT=1 bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    fi | grep -E '^produce ack|quantile="0.99"'
    grep -a 'XX main' target/bench-tmp/latency-split.log | sed -n '3,5p'
  done
done

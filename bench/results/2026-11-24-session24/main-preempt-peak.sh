#!/usr/bin/env bash
# usage: main-preempt-peak.sh ROUNDS
# The closed-loop peak (rate max) with main-ring completions polled (the
# committed behaviour) and preempting (XX_MAIN_PREEMPT, experiment build
# of main-preempt-ab.sh), alternating: latency-split.sh max 1 with 256 KiB
# and with 64 KiB batches.
ROUNDS=${1:-2}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for b in 256KiB 64KiB; do
    for m in poll preempt; do
      echo "## round $r, $b, main-ring completions: $m"
      if [ $m = poll ]; then
        BATCH=$b bash bench/results/2026-11-24-session24/latency-split.sh max 1
      else
        XX_MAIN_PREEMPT=1 BATCH=$b bash bench/results/2026-11-24-session24/latency-split.sh max 1
      fi | grep -E '^produce'
    done
  done
done

#!/usr/bin/env bash
# usage: preempt-ab.sh RATE ROUNDS
# Main-ring completions that preempt, as built in
# io-completion-preempt.patch (a glommio method, the broker's
# `io.completion.preempt`, default true; not kept), against the same
# build with it off (`--io-completion-preempt false`), alternating within
# each round: latency-split.sh RATE 1 per setting (BATCH as exported).
RATE=${1:?rate}; ROUNDS=${2:-3}
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for p in false true; do
    echo "## round $r, io.completion.preempt $p"
    SERVE_ARGS="--io-completion-preempt $p" bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1 |
      grep -E '^produce ack|quantile="0.99"'
  done
done

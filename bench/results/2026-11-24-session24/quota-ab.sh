#!/usr/bin/env bash
# usage: quota-ab.sh RATE ROUNDS QUOTA_US...
# The broker's half-peak latency with the default task quota (100 ms) and
# each QUOTA_US (`spindle serve --task-quota-us`), alternating within each
# round: latency-split.sh RATE 1 per setting.
RATE=${1:?rate}; ROUNDS=${2:-3}; shift 2
cd "$(git rev-parse --show-toplevel)"
for r in $(seq "$ROUNDS"); do
  for q in default "$@"; do
    echo "## round $r, task quota $q"
    if [ "$q" = default ]; then
      bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    else
      SERVE_ARGS="--task-quota-us $q" bash bench/results/2026-11-24-session24/latency-split.sh "$RATE" 1
    fi | grep -E '^produce ack|quantile="0.99"'
  done
done

#!/usr/bin/env bash
# usage: ab-quota-engine.sh [PAIRS] [QUOTAS...]
# The engine append benchmark (16 KiB batches, fdatasync every MiB, 2 GiB)
# at each task quota in turn (default: glommio's 100 ms, 500 us, 200 us),
# repeated PAIRS times; each run bracketed by fio 1 MiB QD8 direct writes.
PAIRS=${1:-3}; shift
QUOTAS=${*:-100000 500 200}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
for pair in $(seq "$PAIRS"); do
  for q in $QUOTAS; do
    echo "### round $pair task-quota-us=$q ($(date -u +%H:%M:%S) UTC)"
    target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 \
      --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --task-quota-us "$q" 2>/dev/null \
      | grep -E "^append|cpu  |device|reference|latency"
  done
done

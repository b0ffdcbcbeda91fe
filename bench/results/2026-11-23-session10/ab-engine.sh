#!/usr/bin/env bash
# usage: ab-engine.sh [PAIRS] [extra spindle-bench engine args]
# The engine append benchmark with the I/O doorbell, then without
# (SPINDLE_IO_DOORBELL=0), alternating; each run bracketed by fio 1 MiB QD8
# direct writes with default and with huge-page buffers (needs root for the
# hugetlbfs mount).
PAIRS=${1:-3}; shift
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp /mnt/huge
mountpoint -q /mnt/huge || mount -t hugetlbfs none /mnt/huge
echo 64 > /proc/sys/vm/nr_hugepages
E="target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384
   --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge"
for pair in $(seq "$PAIRS"); do
  for bell in 1 0; do
    echo "### pair $pair SPINDLE_IO_DOORBELL=$bell $* ($(date -u +%H:%M:%S) UTC)"
    SPINDLE_IO_DOORBELL=$bell $E "$@" 2>/dev/null | grep -E "^append|cpu  |device|reference|latency"
  done
done

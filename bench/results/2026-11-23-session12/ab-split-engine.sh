#!/usr/bin/env bash
# usage: ab-split-engine.sh [PAIRS]
# The engine append benchmark (16 KiB batches, fdatasync every MiB, 2 GiB,
# glommio's default 100 ms task quota) with split rewrites, then without
# (SPINDLE_IO_SPLIT=0), alternating; each run bracketed by fio 1 MiB QD8
# direct writes with default and with huge-page buffers (needs root for the
# hugetlbfs mount).
PAIRS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp /mnt/huge
mountpoint -q /mnt/huge || mount -t hugetlbfs none /mnt/huge
echo 64 > /proc/sys/vm/nr_hugepages
for pair in $(seq "$PAIRS"); do
  for n in 1 0; do
    echo "### pair $pair SPINDLE_IO_SPLIT=$n ($(date -u +%H:%M:%S) UTC)"
    SPINDLE_IO_SPLIT=$n target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append \
      --batch-bytes 16384 --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 \
      --reference-hugetlbfs /mnt/huge 2>/dev/null | grep -E "^append|cpu  |device|reference|latency"
  done
done

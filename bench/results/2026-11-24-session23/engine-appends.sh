#!/usr/bin/env bash
# usage: engine-appends.sh [RUNS]
# Issue 2's append target in one run: this host's limits first
# (`spindle-bench limits`: fio direct-I/O bandwidth, fdatasync latency),
# then RUNS (default 6) engine append runs of the session 14 command
# (16 KiB batches, 2 GiB, fdatasync every MiB, CPU 1), each with fio 1 MiB
# QD8 direct-write references right before and after it, with default and
# with huge-page buffers. Needs fio and a hugetlbfs at /mnt/huge with free
# huge pages; sets both up if missing (as root).
RUNS=${1:-6}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
if ! mount | grep -q ' /mnt/huge type hugetlbfs'; then
  echo 1100 > /proc/sys/vm/nr_hugepages
  mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
fi
echo "## limits ($(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD))"
target/release/spindle-bench limits --dir target/bench-tmp --tcp-secs 0 2>&1 | grep -v '^\['
for run in $(seq "$RUNS"); do
  echo "## run $run ($(date -u +%H:%M:%S) UTC)"
  target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 \
    --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge 2>&1 \
    | grep -E '^append |^  cpu |^  reference '
done
echo "## done ($(date -u +%H:%M:%S) UTC)"

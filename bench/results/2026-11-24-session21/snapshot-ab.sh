#!/usr/bin/env bash
# usage: OLD=path/to/old/spindle-bench snapshot-ab.sh [ROUNDS]
# What the producer-state snapshots (written with every index checkpoint,
# every 128 MiB of a partition's appends, and every sealed segment) and
# their replay at an unclean open cost, old build (OLD, before them) and
# new (target/release) alternating in each round:
# - issue 2's append run (16 KiB batches, 2 GiB, fdatasync every MiB, CPU 1)
#   with fio 1 MiB QD8 direct writes (default and huge-page buffers)
#   before and after each run;
# - issue 2's recovery run (a 1 GiB active segment dropped without close,
#   its index files deleted, `Log::open` timed three times).
# Needs fio and a hugetlbfs at /mnt/huge (set up if missing, as root).
ROUNDS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
if ! mount | grep -q ' /mnt/huge type hugetlbfs'; then
  echo 1100 > /proc/sys/vm/nr_hugepages
  mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
fi
NEW=target/release/spindle-bench
echo "### $(date -u +%H:%M:%S) UTC, new $(git rev-parse --short HEAD), old $OLD"
for round in $(seq "$ROUNDS"); do
  for side in old new; do
    B=$NEW; [ $side = old ] && B=$OLD
    echo "## round $round $side append ($(date -u +%H:%M:%S) UTC)"
    $B engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 --total-mib 2048 \
      --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge 2>&1 \
      | grep -E '^append |^  cpu |^  reference '
  done
  for side in old new; do
    B=$NEW; [ $side = old ] && B=$OLD
    echo "## round $round $side recovery ($(date -u +%H:%M:%S) UTC)"
    $B engine --dir target/bench-tmp --cpu 1 --mode recovery --batch-bytes 16384 --recovery-mib 1024 --repeat 3 2>&1 \
      | grep -E 'recovery open'
  done
done

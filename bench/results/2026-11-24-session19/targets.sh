#!/usr/bin/env bash
# usage: targets.sh
# Issues 2 and 3's targets in one run, with the commands of earlier
# sessions: session 15's peak.sh 2 (the host's limits, fio with huge-page
# buffers before and after, the broker's closed-loop peak), session 16's
# recycle.sh at RATE (default 600MiB, about half of this session's peak;
# its "keeping" runs are the target's), and four engine append runs of the
# session 14 command with fio references (default and huge-page buffers)
# right before and after each. Needs fio and a hugetlbfs at /mnt/huge with
# free huge pages; it sets both up if missing (as root). PARTS picks the
# parts (default "peak latency engine").
PARTS=${PARTS:-peak latency engine}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
if ! mount | grep -q ' /mnt/huge type hugetlbfs'; then
  echo 1100 > /proc/sys/vm/nr_hugepages
  mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
fi
on() { [[ " $PARTS " == *" $1 "* ]]; }
if on peak; then
  echo "## peak.sh 2 ($(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD) + working tree)"
  bash bench/results/2026-11-23-session15/peak.sh 2
fi
if on latency; then
  echo "## recycle.sh ${RATE:-600MiB} 2 ($(date -u +%H:%M:%S) UTC)"
  bash bench/results/2026-11-23-session16/recycle.sh "${RATE:-600MiB}" 2
fi
on engine || exit 0
echo "## engine appends ($(date -u +%H:%M:%S) UTC)"
for run in 1 2 3 4; do
  echo "### run $run ($(date -u +%H:%M:%S) UTC)"
  target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 \
    --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge 2>&1 | grep -v '^\['
done

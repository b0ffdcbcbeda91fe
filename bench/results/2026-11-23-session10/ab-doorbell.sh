#!/usr/bin/env bash
# First version of this session (see README.md): it sets SPINDLE_NO_DOORBELL, which the
# committed doorbell does not read; use ab-engine.sh and ab-broker.sh instead.
# usage: ab-doorbell.sh [PAIRS]
# The I/O doorbell against none (SPINDLE_NO_DOORBELL=1), alternating, at
# glommio's default 100 ms task quota: the engine append benchmark (each run
# bracketed by fio with default and huge-page buffers), then the broker's
# acks=1 peak and its latency at 450 MiB/s (broker on CPU 1, generator on
# CPU 0). Needs root for the hugetlbfs mount fio's huge-page reference uses.
PAIRS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp /mnt/huge
mountpoint -q /mnt/huge || mount -t hugetlbfs none /mnt/huge
echo 64 > /proc/sys/vm/nr_hugepages
E="target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384
   --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge"
LAT=bench/results/2026-11-22-session7/lat.sh
for pair in $(seq "$PAIRS"); do
  for bell in on off; do
    if [ $bell = off ]; then export SPINDLE_NO_DOORBELL=1; else unset SPINDLE_NO_DOORBELL; fi
    echo "### pair $pair doorbell $bell engine ($(date -u +%H:%M:%S) UTC)"
    $E 2>/dev/null | grep -E "^append|cpu  |device|reference"
    echo "### pair $pair doorbell $bell broker max"
    TAIL=14 LINGER=0.3ms $LAT max 1 2>&1 | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
    echo "### pair $pair doorbell $bell broker 450MiB"
    TAIL=14 LINGER=0.3ms $LAT 450MiB 1 2>&1 | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

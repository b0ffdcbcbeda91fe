#!/usr/bin/env bash
# usage: engine-append.sh [RUNS]
# The storage engine issue's append benchmark (16 KiB batches, fdatasync
# asked for every MiB, 2 GiB) in four configurations, interleaved, each run
# bracketed by fio's 1 MiB QD8 direct write on a fresh file, with fio's
# buffers on ordinary pages and on huge pages:
#   small-100ms: direct-I/O buffers on 4 KiB pages, glommio's 100 ms task quota
#   huge-100ms:  buffers on huge pages (the default now), 100 ms quota
#   huge-500us:  huge pages, 500 us task quota
#   huge-200us:  huge pages, 200 us task quota
# Needs root for the hugetlbfs mount that fio's huge-page reference uses.
RUNS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp /mnt/huge
mountpoint -q /mnt/huge || mount -t hugetlbfs none /mnt/huge
echo 64 > /proc/sys/vm/nr_hugepages
B="target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384
   --total-mib 2048 --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge"
for run in $(seq "$RUNS"); do
  for cfg in small-100ms huge-100ms huge-500us huge-200us; do
    case $cfg in
      small-100ms) args="--small-page-buffers --task-quota-us 100000" ;;
      huge-100ms) args="--task-quota-us 100000" ;;
      huge-500us) args="--task-quota-us 500" ;;
      huge-200us) args="--task-quota-us 200" ;;
    esac
    echo "### run $run $cfg ($(date -u +%H:%M:%S) UTC)"
    $B $args 2>/dev/null
  done
done

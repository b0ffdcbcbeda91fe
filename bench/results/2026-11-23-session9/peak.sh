#!/usr/bin/env bash
# usage: peak.sh [RUNS]
# acks=1 peak of `spindle serve --cores 1-1` (generator on CPU 0; lat.sh of
# session 7 at --rate max), each run bracketed by fio's 1 MiB QD8 direct
# write of 2 GiB on a fresh file, with fio's buffers on ordinary pages and
# on huge pages (needs root for the hugetlbfs mount).
RUNS=${1:-2}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp /mnt/huge
mountpoint -q /mnt/huge || mount -t hugetlbfs none /mnt/huge
echo 64 > /proc/sys/vm/nr_hugepages
fio_ref() {
  for mem in malloc mmaphuge:/mnt/huge/spindle-fio-buffers; do
    rm -f target/bench-tmp/fio-ref.dat
    printf 'fio %-40s ' "$mem"
    fio --name=ref --filename=target/bench-tmp/fio-ref.dat --rw=write --bs=1M --iodepth=8 --direct=1 \
      --ioengine=io_uring --size=2048M --end_fsync=1 --iomem=$mem 2>&1 | grep -o 'WRITE: bw=[0-9.]*[MG]iB/s'
  done
  rm -f target/bench-tmp/fio-ref.dat
}
for run in $(seq "$RUNS"); do
  echo "### run $run ($(date -u +%H:%M:%S) UTC)"
  fio_ref
  TAIL=4 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh max 1 2>&1 | grep -E "MiB/s|ack latency"
  fio_ref
done

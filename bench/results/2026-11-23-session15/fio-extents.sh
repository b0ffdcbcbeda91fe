#!/usr/bin/env bash
# usage: fio-extents.sh ROUNDS
# Direct writes into blocks that ext4 has only reserved (fallocate: unwritten
# extents, as Spindle's segments are) against writes over blocks already
# written. One fio thread on CPU 1 (the broker's core in the other scripts)
# writes 8 files round-robin, each sequentially: the broker's pattern with
# 8 partitions. "fresh" lays out new files with fallocate; "overwrite" runs
# the same job again over the files the fresh run wrote.
#   1. 128 KiB writes at queue depth 8, unthrottled: bandwidth and latency.
#   2. 64 KiB writes at queue depth 4, 300 MiB/s: latency at the rate of the
#      broker's latency target.
ROUNDS=${1:-2}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/fio-extents
common="--name=extents --directory=$D --rw=write --direct=1 --ioengine=io_uring --nrfiles=8 --file_service_type=roundrobin --size=4G --runtime=6 --time_based --cpus_allowed=1 --fallocate=native"
show() {
  python3 -c 'import json, sys
w = json.load(sys.stdin)["jobs"][0]["write"]
p = w["clat_ns"]["percentile"]
print("  %5.0f MiB/s  clat p50 %4.0f us  p99 %5.0f us  p99.9 %5.0f us" % (w["bw"] / 1024, p["50.000000"] / 1e3, p["99.000000"] / 1e3, p["99.900000"] / 1e3))'
}
for r in $(seq "$ROUNDS"); do
  echo "### round $r ($(date -u +%H:%M:%S) UTC)"
  for job in "--bs=128k --iodepth=8" "--bs=64k --iodepth=4 --rate=300m"; do
    rm -rf $D; mkdir -p $D
    echo -n "[$job] fresh (fallocated):"; fio --output-format=json $common $job | show
    echo -n "[$job] overwrite:         "; fio --output-format=json $common $job | show
  done
done
rm -rf $D

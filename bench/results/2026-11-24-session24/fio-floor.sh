#!/usr/bin/env bash
# usage: fio-floor.sh RATE [ROUNDS]   (BS=64k for another block size)
# The disk's own completion tail at the broker's half-peak write pattern:
# one fio job on CPU 1 (the broker's core in peak-fio.sh) writing 8 files
# in turn (8 partitions), 256 KiB direct writes through io_uring at RATE
# (e.g. 1200m), queue depth 8 and 2. FILESIZE (default 256M) per file: past
# 8 x FILESIZE the job wraps and overwrites. "fresh" lays the files out with
# fallocate first (the broker's new segments); "overwrite" writes the same
# files again (recycled segments). Prints clat p50/p99/p99.9 in ms.
RATE=${1:?rate, e.g. 1200m}
ROUNDS=${2:-2}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/fio-floor
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
run() { # NAME QD
  fio --name="$1" --directory=$D --nrfiles=8 --filesize=${FILESIZE:-256M} --file_service_type=roundrobin \
    --rw=write --bs=${BS:-256k} --iodepth="$2" --direct=1 --ioengine=io_uring --rate="$RATE" \
    --fallocate=native --cpus_allowed=1 --runtime=8 --time_based --output-format=json |
    python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]["write"]
p = j["clat_ns"]["percentile"]
print("%-22s %6.0f MiB/s  clat p50 %.3f  p99 %.3f  p99.9 %.3f  max %.1f ms" % (sys.argv[1], j["bw"] / 1024,
      p["50.000000"] / 1e6, p["99.000000"] / 1e6, p["99.900000"] / 1e6, j["clat_ns"]["max"] / 1e6))' "$1 qd$2"
}
echo "### $(date -u +%H:%M:%S) UTC, rate $RATE"
for _ in $(seq "$ROUNDS"); do
  for qd in 8 2; do
    rm -rf $D; mkdir -p $D
    run fresh "$qd"
    run overwrite "$qd"
  done
done
rm -rf $D

#!/usr/bin/env bash
# usage: peak-fio.sh [ROUNDS]
# Issue 3's two targets with their fio reference in one run: the host's
# limits (`spindle-bench limits`: fio 1 MiB direct writes QD1/QD8/QD32,
# fdatasync latency) and fio with huge-page buffers three times, then
# ROUNDS rounds of the closed-loop acks=1 peak (broker on CPU 1, generator
# on CPU 0, 2 producers, 8 partitions, 1 KiB records, 16 in flight) with
# 256 KiB and 64 KiB batches and one acks=all run, then acks=1 at half of
# the first round's 256 KiB peak (same shape, open loop) for the ack
# latency, then huge-page fio three times again. Needs fio and a hugetlbfs
# at /mnt/huge with free huge pages; sets both up if missing (as root).
ROUNDS=${1:-2}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/peak-fio
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
if ! mount | grep -q ' /mnt/huge type hugetlbfs'; then
  echo 1100 > /proc/sys/vm/nr_hugepages
  mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
fi
hugefio() {
  for _ in 1 2 3; do
    fio --name=huge-write-1m-qd8 --filename=target/bench-tmp/fio-huge.dat --rw=write --bs=1M --iodepth=8 --direct=1 \
      --size=2048M --ioengine=io_uring --end_fsync=1 --runtime=10 --iomem=mmaphuge:/mnt/huge/spindle-fio-buffers \
      --output-format=json | python3 -c 'import json, sys; print("fio 1 MiB QD8, huge-page buffers: %.0f MiB/s" % (json.load(sys.stdin)["jobs"][0]["write"]["bw"] / 1024))'
    rm -f target/bench-tmp/fio-huge.dat /mnt/huge/spindle-fio-buffers
  done
}
one() { # ACKS BATCH RATE
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39492 --admin-listen 127.0.0.1:39493 --cores 1-1 \
    > target/bench-tmp/peak-fio.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39492) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39492 --topic t --acks "$1" --partitions 8 \
    --record-size 1024 --batch-size "$2" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$3" \
    --max-in-flight 16 --cores 0-0 > target/bench-tmp/peak-fio.out 2>&1
  printf "acks %-3s batch %-6s rate %-9s" "$1" "$2" "$3"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/peak-fio.out | tr -d '\n'
  sed -n 's/^produce ack latency.*: \(p50 [0-9.]*\) .* \(p99 [0-9.]*\)  \(p99.9 [0-9.]*\) .*/  client \1 \2 \3/p' \
    target/bench-tmp/peak-fio.out | tr -d '\n'
  curl -s 127.0.0.1:39493/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { h99 = $2 * 1000 }
    END { printf "  broker produce p99 %.2f\n", h99 }'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['
hugefio
half=
for round in $(seq "$ROUNDS"); do
  echo "## round $round ($(date -u +%H:%M:%S) UTC)"
  one 1 256KiB max
  [ -z "$half" ] && half=$(sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9]*\)\.[0-9]* MiB\/s.*/\1/p' target/bench-tmp/peak-fio.out)
  one 1 256KiB max
  one 1 64KiB max
  one all 256KiB max
done
echo "## half of the first 256 KiB peak ($(date -u +%H:%M:%S) UTC)"
for _ in 1 2 3; do one 1 256KiB "$((half / 2))MiB"; done
hugefio

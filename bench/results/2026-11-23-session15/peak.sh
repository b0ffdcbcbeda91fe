#!/usr/bin/env bash
# usage: peak.sh ROUNDS
# The broker's peak (closed loop) against the host's limits, in one run:
# `spindle-bench limits` first (fio 1 MiB direct writes QD1/QD8/QD32,
# fdatasync latency, loopback TCP) and fio with huge-page buffers, then ROUNDS rounds of closed-loop acks=1
# runs with 8, 16 and 32 produce requests in flight per producer, and one
# acks=all run with 16. Broker: `spindle serve --cores 1-1` (CPU 1) on a
# fresh data directory; generator on CPU 0: 8 partitions, 1 KiB records,
# 64 KiB batches, linger 0.3 ms, 2 producers, 10 s with 3 s warm-up.
# Prints throughput, the client's ack latency, the broker's own Produce
# latency and disk write latency (its /metrics, over the whole run), and
# each process's CPU (share of one core).
ROUNDS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/peak
mkdir -p target/bench-tmp
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['
# fio's headline job again with its buffers on huge pages, as the broker's
# write buffers are (three runs before the broker runs and three after).
hugefio() {
  mount | grep -q ' /mnt/huge type hugetlbfs' || { echo "no hugetlbfs at /mnt/huge: huge-page fio skipped"; return; }
  for _ in 1 2 3; do
    fio --name=huge-write-1m-qd8 --filename=target/bench-tmp/fio-huge.dat --rw=write --bs=1M --iodepth=8 --direct=1 \
      --size=2048M --ioengine=io_uring --end_fsync=1 --runtime=10 --iomem=mmaphuge:/mnt/huge/spindle-fio-buffers \
      --output-format=json | python3 -c 'import json, sys; print("fio 1 MiB QD8, huge-page buffers: %.0f MiB/s" % (json.load(sys.stdin)["jobs"][0]["write"]["bw"] / 1024))'
    rm -f target/bench-tmp/fio-huge.dat /mnt/huge/spindle-fio-buffers
  done
}
hugefio
one() { # ACKS IN_FLIGHT
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/peak.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  local c0 c1 t0 t1 out
  c0=$(awk '{print $14+$15}' /proc/$sp/stat); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %e" -o target/bench-tmp/peak.time target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 \
    --topic t --acks "$1" --partitions 8 --record-size 1024 --batch-size 64KiB --linger 0.3ms --producers 2 \
    --duration 10s --warmup 3s --rate max --max-in-flight "$2" --cores 0-0 > target/bench-tmp/peak.out 2>&1
  c1=$(awk '{print $14+$15}' /proc/$sp/stat); t1=$(date +%s.%N)
  out=$(grep -E "^produced|^produce ack" target/bench-tmp/peak.out)
  printf "acks %-3s in flight %-2s" "$1" "$2"
  echo "$out" | sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' | tr -d '\n'
  echo "$out" | sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) *\(p99.9 [0-9.]*\).*/  client \1 \2 \3/p' | tr -d '\n'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.5"\}/ { h50 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { h99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.5"\}/ { w50 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_disk_writes_total/ { n = $2 }
    /^spindle_disk_write_bytes_total/ { b = $2 }
    END { printf "  broker produce p50 %.2f p99 %.2f  write p50 %.2f p99 %.2f avg %.0f KiB", h50, h99, w50, w99, b / n / 1024 }'
  kill $sp; wait $sp 2>/dev/null
  awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "  broker cpu %.0f%%", c / (t1 - t0) }'
  awk '{ printf "  generator cpu %.0f%%\n", 100 * ($1 + $2) / $3 }' target/bench-tmp/peak.time
  rm -rf $D
}
for round in $(seq "$ROUNDS"); do
  echo "### round $round ($(date -u +%H:%M:%S) UTC)"
  for n in 8 16 32; do one 1 $n; done
  one all 16
done
hugefio

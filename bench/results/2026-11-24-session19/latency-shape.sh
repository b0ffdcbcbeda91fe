#!/usr/bin/env bash
# usage: latency-shape.sh
# Ack latency at half of the peaks in peak-shape.txt: open loop, acks=1,
# fresh `spindle serve --cores 1-1`, generator on CPU 0, 8 partitions,
# 1 KiB records, linger 0.3 ms, 2 producers, 20 s with 5 s warm-up (as
# recycle.sh), at 1400 MiB/s in 256 KiB batches (peak 2696-2810 MiB/s)
# and 600 MiB/s in 64 KiB batches (peak 1124-1189 MiB/s), two rounds.
# Prints the client's ack latency and the broker's own Produce p99.
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/latency-shape
mkdir -p target/bench-tmp
one() { # RATE BATCH
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 \
    > target/bench-tmp/latency-shape.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  echo "rate $1 batch $2:"
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size "$2" --linger 0.3ms --producers 2 --duration 20s --warmup 5s --rate "$1" --cores 0-0 2>&1 \
    | grep -E "^produced|^produce ack" | sed 's/^/  /'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p99 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.999"\}/ { p999 = $2 * 1000 }
    END { printf "  broker produce p99 %.2f p99.9 %.2f ms\n", p99, p999 }'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD)"
for round in 1 2; do
  one 1400MiB 256KiB
  one 600MiB 64KiB
done

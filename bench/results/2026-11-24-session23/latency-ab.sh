#!/usr/bin/env bash
# usage: OLD=path/to/old/spindle latency-ab.sh [ROUNDS]
# Issue 3's latency shape, old broker (OLD) and new (target/release/spindle)
# alternating in each round: acks=1 open loop at 1221 MiB/s with 256 KiB
# batches and at 600 MiB/s with 64 KiB batches (broker on CPU 1, generator
# on CPU 0, 2 producers, 8 partitions, 1 KiB records, 16 in flight, 10 s
# after a 3 s warm-up). Prints the client's ack p50/p99/p99.9 (warm-up
# excluded) and the broker's Produce p99 (whole run).
ROUNDS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/latency-ab
mkdir -p target/bench-tmp
one() { # BIN BATCH RATE
  rm -rf $D
  "$1" serve --data-dir $D --listen 127.0.0.1:39492 --admin-listen 127.0.0.1:39493 --cores 1-1 \
    > target/bench-tmp/latency-ab.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39492) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39492 --topic t --acks 1 --partitions 8 \
    --record-size 1024 --batch-size "$2" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$3" \
    --max-in-flight 16 --cores 0-0 > target/bench-tmp/latency-ab.out 2>&1
  printf "batch %-6s rate %-8s" "$2" "$3"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/latency-ab.out | tr -d '\n'
  sed -n 's/^produce ack latency.*: \(p50 [0-9.]*\) .* \(p99 [0-9.]*\)  \(p99.9 [0-9.]*\) .*/  client \1 \2 \3/p' \
    target/bench-tmp/latency-ab.out | tr -d '\n'
  curl -s 127.0.0.1:39493/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { h99 = $2 * 1000 }
    END { printf "  broker produce p99 %.2f\n", h99 }'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
echo "### $(date -u +%H:%M:%S) UTC, new $(git rev-parse --short HEAD), old $OLD"
for round in $(seq "$ROUNDS"); do
  for side in old new; do
    B=target/release/spindle; [ $side = old ] && B=$OLD
    echo "## round $round $side ($(date -u +%H:%M:%S) UTC)"
    one "$B" 256KiB 1221MiB
    one "$B" 64KiB 600MiB
  done
done

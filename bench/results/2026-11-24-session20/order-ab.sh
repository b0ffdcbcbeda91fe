#!/usr/bin/env bash
# usage: OLD=path/to/spindle [ONLY=latency] order-ab.sh [ROUNDS]
# What keeping produce order costs: the acks=1 peak and latency of the old
# build ($OLD) and of target/release/spindle, alternating in each round.
# Shapes: peak.sh's (broker on CPU 1, generator on CPU 0, 2 producers,
# 8 partitions, 64 KiB batches of 1 KiB records, 16 in flight), the same
# with 256 KiB batches, and one where the broker runs on both cores, so
# most requests cross the core mesh (generator unpinned). Then acks=1 at a
# fixed 600 MiB/s (64 KiB batches) for the ack latency. Prints MiB/s and
# the client's ack p50/p99/p99.9 for each. ONLY=latency runs only the
# fixed-rate shape.
cd "$(git rev-parse --show-toplevel)"
: "${OLD:?OLD must name the old spindle binary}"
NEW=target/release/spindle
D=target/bench-tmp/order-ab
ROUNDS=${1:-2}
mkdir -p target/bench-tmp
one() { # BINARY LABEL BROKER_CORES GEN_CORES BATCH RATE
  rm -rf $D
  "$1" serve --data-dir $D --listen 127.0.0.1:39392 --admin-listen 127.0.0.1:39393 --cores "$3" \
    > target/bench-tmp/order-ab.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39392) 2>/dev/null && break; sleep 0.1; done
  local pin=()
  [ "$4" != any ] && pin=(--cores "$4")
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39392 --topic t --acks 1 --partitions 8 \
    --record-size 1024 --batch-size "$5" --linger 0.3ms --producers 2 --duration 10s --warmup 3s \
    --rate "$6" --max-in-flight 16 "${pin[@]}" > target/bench-tmp/order-ab.out 2>&1
  printf "%-8s broker %-3s batch %-6s rate %-7s" "$2" "$3" "$5" "$6"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/order-ab.out | tr -d '\n'
  sed -n 's/^produce ack latency.*: \(p50 [0-9.]*\) .* \(p99 [0-9.]*\)  \(p99.9 [0-9.]*\) .*/  ack \1 \2 \3/p' \
    target/bench-tmp/order-ab.out | tr -d '\n'
  echo
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
echo "### $(date -u +%H:%M:%S) UTC, new = $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes), old = $OLD"
for round in $(seq "$ROUNDS"); do
  for b in "$OLD:old" "$NEW:new"; do
    bin=${b%%:*}; label=${b##*:}
    if [ "${ONLY:-}" != latency ]; then
      one "$bin" $label 1-1 0-0 64KiB max
      one "$bin" $label 1-1 0-0 256KiB max
      one "$bin" $label 0-1 any 64KiB max
    fi
    one "$bin" $label 1-1 0-0 64KiB 600MiB
  done
done

#!/usr/bin/env bash
# usage: ab-broker.sh OLD_SPINDLE NEW_SPINDLE RATE [PAIRS] [ACKS]
# Alternates two `spindle` binaries (broker on CPU 1, `--cores 1-1`) under
# the load generator on CPU 0: 8 partitions, 1 KiB records, 64 KiB batches,
# linger 0.3 ms, 2 producers, 10 s with 3 s warm-up, at RATE (max = closed
# loop). Prints throughput, ack latency, the broker's CPU over the whole
# run (all its threads, from /proc/PID/stat) per MiB produced, and the
# device's write requests (from /proc/diskstats) per MiB.
OLD=$1; NEW=$2; RATE=$3; PAIRS=${4:-3}; ACKS=${5:-1}
cd "$(git rev-parse --show-toplevel)"
DEV=$(basename "$(df --output=source target | tail -1)")
D=target/bench-tmp/ab-broker
mkdir -p target/bench-tmp
one() {
  rm -rf $D
  "$1" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/ab-broker.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  local c0 d0 c1 d1 out
  c0=$(awk '{print $14+$15}' /proc/$sp/stat); d0=$(awk -v d="$DEV" '$3==d {print $8}' /proc/diskstats)
  out=$(target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks "$ACKS" --partitions 8 \
    --record-size 1024 --batch-size 64KiB --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$RATE" \
    --cores 0-0 2>&1 | grep -E "^produced|ack latency")
  c1=$(awk '{print $14+$15}' /proc/$sp/stat); d1=$(awk -v d="$DEV" '$3==d {print $8}' /proc/diskstats)
  kill $sp; wait $sp
  local mib; mib=$(echo "$out" | sed -n 's/^produced [0-9]* records (\([0-9.]*\) MiB).*/\1/p')
  echo "$out" | sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/  \1 MiB\/s/p' | tr -d '\n'
  echo "$out" | sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) *\(p99.9 [0-9.]*\).*/   ack ms \1 \2 \3/p' | tr -d '\n'
  awk -v c=$((c1 - c0)) -v m="$mib" -v w=$((d1 - d0)) 'BEGIN { printf "   broker %.2f ms CPU/MiB   %.1f device writes/MiB\n", c * 10 / m, w / m }'
  rm -rf $D
}
for pair in $(seq "$PAIRS"); do
  echo "### pair $pair rate $RATE acks $ACKS ($(date -u +%H:%M:%S) UTC)"
  echo -n "old"; one "$OLD"
  echo -n "new"; one "$NEW"
done

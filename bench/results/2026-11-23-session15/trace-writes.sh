#!/usr/bin/env bash
# usage: trace-writes.sh SPINDLE_PZ RATE ROUNDS
# Where a segment write's time goes in the kernel, for segments reserved
# with fallocate (as committed) and for segments written with zeros first
# (XX_PREZERO_MIB, prezero.patch), alternating. Each run: the broker on CPU
# 1, topic t (8 partitions) made with a tiny produce, 12 s of quiet, then
# the generator on CPU 0 at RATE (acks=1, 1 KiB records, 64 KiB batches,
# linger 0.3 ms, 2 producers); 4 s in, 2 s of io_uring and block-layer
# events of the broker are recorded, and trace-writes.py prints:
#   io_uring: a write request from the kernel taking it to its completion
#             being posted;
#   block:    the device request from issue to completion.
PZ=$1; RATE=$2; ROUNDS=$3
cd "$(git rev-parse --show-toplevel)"
HERE=bench/results/2026-11-23-session15
D=target/bench-tmp/trace-writes
one() {
  rm -rf $D; mkdir -p $D
  env $1 "$PZ" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/trace-writes.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 1ms --producers 1 --duration 1s --warmup 0s --rate 1MiB --cores 0-0 > /dev/null 2>&1
  sleep 12
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 --duration 8s --warmup 2s --rate "$RATE" --cores 0-0 > target/bench-tmp/trace-writes.out 2>&1 &
  local gp=$!
  sleep 4
  perf record -q -o target/bench-tmp/trace-writes.data -e io_uring:io_uring_submit_req,io_uring:io_uring_complete,block:block_rq_issue,block:block_rq_complete -p $sp -- sleep 2 2>/dev/null
  wait $gp
  grep -E "^produce ack" target/bench-tmp/trace-writes.out | sed 's/^/  /'
  kill $sp; wait $sp 2>/dev/null
  perf script -i target/bench-tmp/trace-writes.data 2>/dev/null | python3 $HERE/trace-writes.py | sed 's/^/  /'
  rm -rf $D
}
for r in $(seq "$ROUNDS"); do
  echo "### round $r rate $RATE ($(date -u +%H:%M:%S) UTC)"
  echo "fallocated:"; one XX_NONE=1
  echo "prezeroed:";  one XX_PREZERO_MIB=600
done

#!/usr/bin/env bash
# usage: trace-dio-wq.sh RATE ROUNDS
# How long a segment write's completion waits for the kernel's direct-I/O
# completion worker. Each run: `spindle serve --cores 1-1` on a fresh data
# directory, the generator on CPU 0 at RATE (acks=1, 8 partitions, 1 KiB
# records, 64 KiB batches, linger 0.3 ms, 2 producers); 4 s in, 2 s of
# workqueue events on every CPU, read by trace-dio-wq.py.
RATE=$1; ROUNDS=${2:-1}
cd "$(git rev-parse --show-toplevel)"
HERE=bench/results/2026-11-23-session15
D=target/bench-tmp/trace-dio-wq
for r in $(seq "$ROUNDS"); do
  echo "### round $r rate $RATE ($(date -u +%H:%M:%S) UTC)"
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/trace-dio-wq.log 2>&1 &
  sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 --duration 8s --warmup 2s --rate "$RATE" --cores 0-0 > target/bench-tmp/trace-dio-wq.out 2>&1 &
  gp=$!
  sleep 4
  perf record -q -a -o target/bench-tmp/trace-dio-wq.data \
    -e workqueue:workqueue_queue_work,workqueue:workqueue_execute_start,workqueue:workqueue_execute_end -- sleep 2 2>/dev/null
  wait $gp
  grep -E "^produce ack" target/bench-tmp/trace-dio-wq.out
  kill $sp; wait $sp 2>/dev/null
  perf script -i target/bench-tmp/trace-dio-wq.data 2>/dev/null | python3 $HERE/trace-dio-wq.py
  rm -rf $D
done

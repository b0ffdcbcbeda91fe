#!/usr/bin/env bash
# usage: trace-cpu1.sh RATE
# Who holds CPU 1 (the broker's core) while the broker's writes are slow:
# the broker at RATE as in trace-tail.sh, 2 s of sched_switch events on
# CPU 1 and the block requests, then trace-cpu1.py prints each task's
# time on CPU 1, its longest stretches, and how many block completions
# were delayed behind one of them.
RATE=${1:?rate}
cd "$(git rev-parse --show-toplevel)"
HERE=bench/results/2026-11-24-session24
D=target/bench-tmp/trace-cpu1
rm -rf $D
target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/trace-cpu1.log 2>&1 &
sp=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
  --batch-size 256KiB --linger 0.3ms --producers 2 --duration 10s --warmup 2s --rate "$RATE" --max-in-flight 16 \
  --cores 0-0 > target/bench-tmp/trace-cpu1.out 2>&1 &
gp=$!
sleep 4
perf record -q -a -o target/bench-tmp/trace-cpu1.data -e sched:sched_switch -e block:block_rq_issue,block:block_rq_complete \
  -- sleep 2 2>/dev/null
wait $gp
grep -E "^produce ack" target/bench-tmp/trace-cpu1.out
kill $sp; wait $sp 2>/dev/null
perf script -i target/bench-tmp/trace-cpu1.data 2>/dev/null | python3 $HERE/trace-cpu1.py
rm -rf $D

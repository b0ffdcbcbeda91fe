#!/usr/bin/env bash
# usage: trace-tail.sh RATE [BATCH]
# Where the broker's slow segment writes come from at RATE (default batch
# 256 KiB; acks=1, 8 partitions, 2 producers, 1 KiB records, linger 0.3
# ms, 16 in flight, broker on CPU 1, generator on CPU 0). 4 s into a 10 s
# run, 2 s of kernel events are recorded system-wide (io_uring writes of
# the broker, block requests, jbd2 commits, the dio completion work
# items) and trace-tail.py relates the slow writes to them.
RATE=${1:?rate}; BATCH=${2:-256KiB}
cd "$(git rev-parse --show-toplevel)"
HERE=bench/results/2026-11-24-session24
D=target/bench-tmp/trace-tail
rm -rf $D
target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/trace-tail.log 2>&1 &
sp=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
  --batch-size "$BATCH" --linger 0.3ms --producers 2 --duration 10s --warmup 2s --rate "$RATE" --max-in-flight 16 \
  --cores 0-0 > target/bench-tmp/trace-tail.out 2>&1 &
gp=$!
sleep 4
perf record -q -a -o target/bench-tmp/trace-tail.data \
  -e io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_queue_async_work \
  -e block:block_rq_issue,block:block_rq_complete \
  -e jbd2:jbd2_start_commit,jbd2:jbd2_commit_locking,jbd2:jbd2_end_commit \
  -e workqueue:workqueue_queue_work,workqueue:workqueue_execute_start,workqueue:workqueue_execute_end \
  -- sleep 2 2>/dev/null
wait $gp
grep -E "^produce ack" target/bench-tmp/trace-tail.out
curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_disk_write_latency_seconds\{quantile="0.99'
kill $sp; wait $sp 2>/dev/null
perf script -i target/bench-tmp/trace-tail.data 2>/dev/null > target/bench-tmp/trace-tail.txt
python3 $HERE/trace-tail.py < target/bench-tmp/trace-tail.txt
rm -rf $D

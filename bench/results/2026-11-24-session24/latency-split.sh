#!/usr/bin/env bash
# usage: latency-split.sh RATE RUNS
# The broker's own view of a produce at RATE, from /metrics after each run:
# the wait in the core's run queue, the handler's time, the total (to the
# response written), and the segment writes' latency. `spindle serve
# --cores 1-1` on a fresh data directory; the generator on CPU 0 (acks=1,
# 8 partitions, 1 KiB records, BATCH (default 256 KiB) batches, linger 0.3 ms, 2 producers,
# 10 s with 3 s warm-up). SERVE_ARGS adds flags to `spindle serve`;
# BROKER_CPU and GEN_CPU move the two processes.
RATE=$1; RUNS=${2:-1}; BATCH=${BATCH:-256KiB}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/latency-split
for r in $(seq "$RUNS"); do
  echo "### run $r rate $RATE ($(date -u +%H:%M:%S) UTC)"
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores ${BROKER_CPU:-1}-${BROKER_CPU:-1} $SERVE_ARGS > target/bench-tmp/latency-split.log 2>&1 &
  sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size "$BATCH" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$RATE" --max-in-flight 16 --cores ${GEN_CPU:-0}-${GEN_CPU:-0} 2>&1 | grep -E "^produced|^produce ack"
  curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_request_(queue_|total_)?latency_seconds\{api="Produce",quantile="0.(5|99|999)"|^spindle_disk_write_latency_seconds\{quantile="0.(5|99|999)"'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
done

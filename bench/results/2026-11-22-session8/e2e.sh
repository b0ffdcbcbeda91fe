#!/usr/bin/env bash
# Produce and one tailing consumer together (acks=1): end-to-end latency
# from a record's intended send time to its arrival at the consumer.
# Broker CPU 1, generator (producers and consumer) CPU 0; fresh data dir.
cd "$(git rev-parse --show-toplevel)"
date -u; git log --oneline -1
for rate in 100MiB 100MiB 300MiB 300MiB; do
  D=target/bench-tmp/broker-e2e; rm -rf $D; mkdir -p target/bench-tmp
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/broker-e2e.log 2>&1 &
  SP=$!
  for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  echo "### e2e rate $rate"
  target/release/spindle-bench e2e --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger ${LINGER:-0.3ms} --producers 2 --consumers 1 --duration 10s --warmup 3s --rate $rate --cores 0-0 2>&1 \
    | grep -vE "^\[" | grep -E "MiB/s|latency|rtt|consumed|fetch"
  curl -s 127.0.0.1:39293/metrics | grep -E 'request_(total_)?latency_seconds.api="Fetch".*(0.5|0.99)"' | tr '\n' ' '; echo
  kill $SP; wait $SP; rm -rf $D
done
date -u

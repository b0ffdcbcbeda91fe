#!/usr/bin/env bash
# usage: null-sink.sh RUNS [RATE] [BATCH]
# The generator's own floor at the half-peak shape: `spindle-bench
# null-sink` (a Kafka endpoint that acknowledges every produce at once and
# keeps nothing) on CPU 1 where the broker runs, the generator on CPU 0
# with the same flags as `shape.sh` (2 producers, 8 partitions, 16 in
# flight, linger 0.3 ms, 10 s after 3 s of warm-up). RUNS runs.
RUNS=${1:-3}; RATE=${2:-559MiB}; BATCH=${3:-64KiB}
cd "$(git rev-parse --show-toplevel)"
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD), $RATE $BATCH"
for _ in $(seq "$RUNS"); do
  target/release/spindle-bench null-sink --listen 127.0.0.1:39892 --cores 1 > /dev/null 2>&1 &
  sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39892) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39892 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size "$BATCH" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$RATE" --max-in-flight 16 \
    --cores 0-0 2>&1 | grep -E "^produce ack|^produce request"
  kill $sp; wait $sp 2>/dev/null
done

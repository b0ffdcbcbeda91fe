#!/usr/bin/env bash
# usage: slice-ab.sh PAIRS [SLICE_US] [RATE] [BATCH] [PRODUCERS]
# Alternates open-loop acks=1 runs (1 KiB records, 8 partitions, 16
# requests in flight per producer, 10 s including 3 s of warm-up, so 7 s
# measured; broker on CPU 1 with the ack journal, generator on CPU 0)
# between the default scheduler slice and a short EEVDF slice (setslice.c:
# sched_setattr's sched_runtime, used by Linux 6.12 and later) set on
# every thread of both the broker and the generator once the generator
# has started; threads created after that keep the default. Prints the
# generator's latency lines and the broker's Produce p99/p99.9 from
# /metrics.
PAIRS=${1:-3}; US=${2:-100}; RATE=${3:-559MiB}; BATCH=${4:-64KiB}; P=${5:-2}
here=$(cd "$(dirname "$0")" && pwd)
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
gcc -O2 -o target/bench-tmp/setslice "$here/setslice.c"
one() { # $1: slice in µs, or "default"
  local D=target/bench-tmp/slice-ab
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/slice-ab.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  echo "## $(date -u +%H:%M:%S) slice $1, rate $RATE producers $P batch $BATCH"
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size "$BATCH" --linger 0.3ms --producers $P --duration 10s --warmup 3s --rate "$RATE" --max-in-flight 16 --cores 0-0 \
    > target/bench-tmp/slice-ab.out 2>&1 &
  local gp=$!
  sleep 1
  if [ "$1" != default ]; then
    target/bench-tmp/setslice "$1" $(ls /proc/$sp/task) $(ls /proc/$gp/task) || echo "setslice failed"
  fi
  wait $gp
  grep -E "^produce ack|^produce request" target/bench-tmp/slice-ab.out
  curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_request_total_latency_seconds\{api="Produce",quantile="0.(99|999)"|^spindle_ack_journal_full_total' | sed 's/spindle_//; s/latency_seconds//' | tr '\n' ' '; echo
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
for i in $(seq "$PAIRS"); do
  one default
  one "$US"
done

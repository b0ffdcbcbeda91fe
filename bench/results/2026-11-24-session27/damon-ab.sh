#!/usr/bin/env bash
# usage: damon-ab.sh PAIRS [RATE] [BATCH] [PRODUCERS]
# Alternates open-loop acks=1 runs (1 KiB records, 8 partitions, 16
# requests in flight per producer, 10 s including 3 s of warm-up, so 7 s
# measured; broker on CPU 1 with the ack journal, generator on CPU 0)
# between the host as booted and the host with its DAMON reclaim thread
# (kdamond) stopped (/sys/kernel/mm/damon/admin/kdamonds/0/state off).
# kdamond is started again after each stopped run and when the script
# exits, and the next run waits SETTLE seconds (default 75): its pageout
# scheme only takes regions aged 12 aggregation intervals of 5 s (see
# host.txt). Prints the generator's latency lines and the broker's Produce
# p99/p99.9 from /metrics.
# The runs in damon-ab.txt and damon-ab-nosettle.txt (which had no wait)
# came from a version that wrote "on" to a kdamond already on; each such
# write printed "Device or resource busy" and changed nothing.
PAIRS=${1:-3}; RATE=${2:-559MiB}; BATCH=${3:-64KiB}; P=${4:-2}
K=/sys/kernel/mm/damon/admin/kdamonds/0/state
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
trap '[ -w $K ] && [ "$(cat $K)" = off ] && echo on > $K' EXIT
one() { # $1: on or off
  local D=target/bench-tmp/damon-ab
  rm -rf $D
  [ "$(cat $K)" = "$1" ] || echo "$1" > $K
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/damon-ab.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  echo "## $(date -u +%H:%M:%S) kdamond $(cat $K), rate $RATE producers $P batch $BATCH"
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size "$BATCH" --linger 0.3ms --producers $P --duration 10s --warmup 3s --rate "$RATE" --max-in-flight 16 --cores 0-0 \
    2>&1 | grep -E "^produce ack|^produce request"
  curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_request_total_latency_seconds\{api="Produce",quantile="0.(99|999)"|^spindle_ack_journal_full_total' | sed 's/spindle_//; s/latency_seconds//' | tr '\n' ' '; echo
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
  if [ "$1" = off ]; then echo on > $K; sleep ${SETTLE:-75}; fi
}
for i in $(seq "$PAIRS"); do
  one on
  one off
done

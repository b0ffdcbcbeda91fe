#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"
B=target/release/spindle-bench
date -u; git log --oneline -1
$B limits --dir target/bench-tmp --repeat 3 2>&1 | sed -n '/^measurement/,$p'
for i in 1 2; do
  echo "### null-sink ceiling run $i (sink CPU 1, generator CPU 0, linger 0.3ms, rate max)"
  $B null-sink --listen 127.0.0.1:39292 --cores 1-1 > /tmp/sink.log 2>&1 & SP=$!; sleep 0.5
  $B produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 --batch-size 64KiB --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate max --cores 0-0 2>&1 | grep -E "^produced|ack lat|rtt"
  kill $SP; wait $SP 2>/dev/null
done
for spec in "max 1" "max 1" "450MiB 1" "500MiB 1" "450MiB 1" "500MiB 1" "450MiB 1" "max all" "250MiB all"; do
  set -- $spec
  echo "### acks=$2 rate $1 linger 0.3ms (broker CPU 1, generator CPU 0)"
  TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh $1 $2 2>&1 | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
done
$B limits --dir target/bench-tmp --repeat 1 --tcp-secs 1 2>&1 | sed -n '/^measurement/,$p'
date -u

#!/usr/bin/env bash
# usage: ab-generator.sh SPINDLE RATE PAIRS ACKS "EXTRA_A" "EXTRA_B"
# One broker build (CPU 1, `--cores 1-1`) under the load generator on CPU 0
# run two ways, alternating: the generator's extra flags EXTRA_A, then
# EXTRA_B (e.g. "" and "--max-in-flight 1"). Workload as ab-broker.sh (session
# 12): 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms, 2
# producers, 10 s with 3 s warm-up. Prints throughput, the client's ack
# latency, the broker's own Produce latency (its /metrics histogram, over
# the whole run, warm-up included), and each process's CPU use over the
# run (share of one core).
SPINDLE=$1; RATE=$2; PAIRS=$3; ACKS=$4; A=$5; B=$6
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/ab-generator
mkdir -p target/bench-tmp
one() {
  rm -rf $D
  "$SPINDLE" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/ab-generator.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  local c0 c1 t0 t1 out gp g
  c0=$(awk '{print $14+$15}' /proc/$sp/stat); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S %e" -o target/bench-tmp/ab-generator.time target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks "$ACKS" --partitions 8 \
    --record-size 1024 --batch-size 64KiB --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$RATE" \
    --cores 0-0 $1 > target/bench-tmp/ab-generator.out 2>&1 &
  gp=$!
  wait $gp
  c1=$(awk '{print $14+$15}' /proc/$sp/stat); t1=$(date +%s.%N)
  out=$(grep -E "^produced|^produce ack" target/bench-tmp/ab-generator.out)
  echo "$out" | sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/  \1 MiB\/s/p' | tr -d '\n'
  echo "$out" | sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) *\(p99.9 [0-9.]*\).*/   client ack ms \1 \2 \3/p' | tr -d '\n'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.5"\}/ { p50 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p99 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.999"\}/ { p999 = $2 * 1000 }
    END { printf "   broker ms p50 %.3f p99 %.3f p99.9 %.3f", p50, p99, p999 }'
  kill $sp; wait $sp
  awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "   broker cpu %.0f%%", c / (t1 - t0) }'
  awk '{ printf "   generator cpu %.0f%%\n", 100 * ($1 + $2) / $3 }' target/bench-tmp/ab-generator.time
  rm -rf $D
}
for pair in $(seq "$PAIRS"); do
  echo "### pair $pair rate $RATE acks $ACKS ($(date -u +%H:%M:%S) UTC)"
  echo -n "A [$A]"; one "$A"
  echo -n "B [$B]"; one "$B"
done

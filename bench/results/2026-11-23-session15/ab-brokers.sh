#!/usr/bin/env bash
# usage: ab-brokers.sh GEN RATE PAIRS ACKS LINGER SPINDLE...
# Broker builds (or wrapper scripts that set environment variables) run in
# turn under one generator build GEN: broker on CPU ${BCORES:-1-1}, generator on
# ${GCORES:-0-0}, 8 partitions, 1 KiB records, 64 KiB batches, ${PRODUCERS:-2}
# producers, 10 s with 3 s warm-up; extra generator flags in $GENEXTRA.
# ab-ring-interval-300.txt: SPINDLE = wrappers r500, r100, r30 running a
# build with ring-interval.patch with XX_RING_US=XX_NUDGE_US=500, 100, 30.
GEN=$1; RATE=$2; PAIRS=$3; ACKS=$4; LINGER=$5; shift 5
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/ab-b
mkdir -p target/bench-tmp
one() {
  rm -rf $D
  "$1" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores ${BCORES:-1-1} > target/bench-tmp/ab-b.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  local bp; bp=$(pgrep -f "serve --data-dir $D" | tail -1)
  local c0 c1 t0 t1 out
  c0=$(awk '{print $14+$15}' /proc/$bp/stat); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %e" -o target/bench-tmp/ab-b.time "$GEN" produce --bootstrap 127.0.0.1:39292 --topic t --acks "$ACKS" --partitions 8 \
    --record-size 1024 --batch-size 64KiB --linger "$LINGER" --producers ${PRODUCERS:-2} --duration 10s --warmup 3s --rate "$RATE" \
    --cores ${GCORES:-0-0} $GENEXTRA > target/bench-tmp/ab-b.out 2>&1
  c1=$(awk '{print $14+$15}' /proc/$bp/stat); t1=$(date +%s.%N)
  out=$(grep -E "^produced|^produce ack" target/bench-tmp/ab-b.out)
  echo "$out" | sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' | tr -d '\n'
  echo "$out" | sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) *\(p99.9 [0-9.]*\).*/  client \1 \2 \3/p' | tr -d '\n'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_latency_seconds\{api="Produce",quantile="0.5"\}/ { h50 = $2 * 1000 }
    /^spindle_request_latency_seconds\{api="Produce",quantile="0.99"\}/ { h99 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.5"\}/ { w50 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_io_doorbell_rings_total/ { r = $2 }
    /^spindle_io_doorbell_nudges_total/ { nu = $2 }
    END { printf "  handler p50 %.2f p99 %.2f total p99 %.2f  write p50 %.2f p99 %.2f  rings %d nudges %d", h50, h99, p99, w50, w99, r, nu }'
  kill $sp; wait $sp 2>/dev/null
  awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "  bcpu %.0f%%", c / (t1 - t0) }'
  awk '{ printf "  gcpu %.0f%%\n", 100 * ($1 + $2) / $3 }' target/bench-tmp/ab-b.time
  rm -rf $D
}
for pair in $(seq "$PAIRS"); do
  echo "### pair $pair rate $RATE acks $ACKS linger $LINGER ($(date -u +%H:%M:%S) UTC)"
  for b in "$@"; do echo -n "$(basename $b)"; one "$b"; done
done

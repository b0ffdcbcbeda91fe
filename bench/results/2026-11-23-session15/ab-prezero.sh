#!/usr/bin/env bash
# usage: ab-prezero.sh SPINDLE_PZ RATE PAIRS ACKS LINGER   (generator flags in $GENEXTRA)
# SPINDLE_PZ: `spindle` built with prezero.patch applied (not committed).
# One broker build run two ways, alternating: A as committed (segments
# reserved with fallocate: unwritten extents); B with XX_PREZERO_MIB=600,
# which writes zeros over the first 600 MiB of topic t's segments when they
# are created, so appends overwrite written blocks. Both: the topic is made
# with a tiny produce, then 12 s of quiet (the zero-fill), then the measured
# run (7 s, 2 s warm-up; 8 partitions, 1 KiB records, 64 KiB batches, 2
# producers, generator on CPU 0, broker on CPU 1).
PZ=$1; RATE=$2; PAIRS=$3; ACKS=$4; LINGER=$5
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/ab-pz
one() {
  rm -rf $D; mkdir -p $D
  env $1 "$PZ" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/ab-pz.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 --batch-size 64KiB --linger 1ms --producers 1 --duration 1s --warmup 0s --rate 1MiB --cores 0-0 > /dev/null 2>&1
  sleep 12
  local c0 c1 t0 t1 out
  c0=$(awk '{print $14+$15}' /proc/$sp/stat); t0=$(date +%s.%N)
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks "$ACKS" --partitions 8 \
    --record-size 1024 --batch-size 64KiB --linger "$LINGER" --producers 2 --duration 7s --warmup 2s --rate "$RATE" \
    --cores 0-0 $GENEXTRA > target/bench-tmp/ab-pz.out 2>&1
  c1=$(awk '{print $14+$15}' /proc/$sp/stat); t1=$(date +%s.%N)
  out=$(grep -E "^produced|^produce ack" target/bench-tmp/ab-pz.out)
  echo "$out" | sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' | tr -d '\n'
  echo "$out" | sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) *\(p99.9 [0-9.]*\).*/  client \1 \2 \3/p' | tr -d '\n'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_latency_seconds\{api="Produce",quantile="0.5"\}/ { h50 = $2 * 1000 }
    /^spindle_request_latency_seconds\{api="Produce",quantile="0.99"\}/ { h99 = $2 * 1000 }
    /^spindle_request_latency_seconds\{api="Produce",quantile="0.999"\}/ { h999 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.5"\}/ { w50 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    END { printf "  broker produce p50 %.2f p99 %.2f p99.9 %.2f  write p50 %.2f p99 %.2f", h50, h99, h999, w50, w99 }'
  kill $sp; wait $sp 2>/dev/null
  awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "  bcpu %.0f%%\n", c / (t1 - t0) }'
  ls -la $D/t-0/ | grep '\.log' | awk '{printf "    t-0 log file %d MiB\n", $5/1048576}' | head -1
  rm -rf $D
}
for pair in $(seq "$PAIRS"); do
  echo "### pair $pair rate $RATE acks $ACKS linger $LINGER ($(date -u +%H:%M:%S) UTC)"
  echo -n "fallocated"; one "XX_NONE=1"
  echo -n "prezeroed "; one "XX_PREZERO_MIB=600"
done

#!/bin/bash
# usage: lat.sh RATE ACKS [extra serve args] -> one run on a fresh data dir with the latency breakdown
RATE=$1; ACKS=${2:-1}; shift; shift
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp; D=target/bench-tmp/broker-lat; rm -rf $D
${SPINDLE:-target/release/spindle} serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 "$@" > target/bench-tmp/broker-lat.log 2>&1 &
SP=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
/usr/bin/time -f "gen cpu %U user %S sys %e wall" ${BENCH:-target/release/spindle-bench} produce --bootstrap 127.0.0.1:39292 --topic t --acks $ACKS --partitions 8 --record-size 1024 \
  --batch-size 64KiB --linger ${LINGER:-0ms} --producers 2 --duration 10s --warmup 3s --rate $RATE --cores 0-0 $GENARGS 2>&1 | grep -E "MiB/s|latency|rtt|gen cpu" | tail -${TAIL:-4}
curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_disk_write_latency_seconds|^spindle_disk_writes_total|^spindle_disk_write_bytes_total|request_(total_)?latency_seconds.api=.Produce.*(0.5|0.99|0.999)"' | sed 's/spindle_//; s/{api="Produce",/{/' | tr '\n' ' '; echo
kill $SP; wait $SP
rm -rf $D

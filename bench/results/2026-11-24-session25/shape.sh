#!/usr/bin/env bash
# usage: shape.sh RATE PRODUCERS PARTITIONS INFLIGHT [BATCH] [LINGER]
# One open-loop acks=1 run of 1 KiB records against `spindle serve --cores
# 1-1` on a fresh data directory (the generator on CPU 0), 10 s with 3 s of
# warm-up. Prints the generator's record and request latency, then the
# broker's Produce total latency and segment-write latency from /metrics.
# PREFIX runs the broker under a command (e.g. "chrt -i 0"); SERVE_ARGS adds
# broker flags; DATA moves the data directory; ACKS (default 1); METRICS
# (a regular expression) prints more /metrics lines (session 26:
# '^spindle_ack_journal_(full|appends)_total', the ack journal's counters).
RATE=$1; P=$2; N=$3; F=$4; BATCH=${5:-64KiB}; L=${6:-0.3ms}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
D=${DATA:-target/bench-tmp/shape}
rm -rf $D
$PREFIX target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 $SERVE_ARGS > target/bench-tmp/shape.log 2>&1 &
sp=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
echo "## rate $RATE producers $P partitions $N inflight $F batch $BATCH linger $L"
target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks ${ACKS:-1} --partitions $N --record-size 1024 \
  --batch-size "$BATCH" --linger $L --producers $P --duration 10s --warmup 3s --rate "$RATE" --max-in-flight $F --cores 0-0 2>&1 | grep -E "^produced|^produce ack|^produce request" | sed 's/produced.*measured after warm-up: [0-9]* rec\/s, //'
curl -s 127.0.0.1:39293/metrics | grep -E '^spindle_request_total_latency_seconds\{api="Produce",quantile="0.(99|999)"|^spindle_disk_write_latency_seconds\{quantile="0.(5|99|999)"'"${METRICS:+|$METRICS}" | sed 's/spindle_//; s/latency_seconds//'| tr '\n' ' '; echo
kill $sp; wait $sp 2>/dev/null
rm -rf $D

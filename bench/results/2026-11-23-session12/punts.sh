#!/usr/bin/env bash
# usage: punts.sh SPINDLE [RATE]
# Counts, over 3 s of produce load (as ab-broker.sh, default RATE max), the
# io_uring requests the broker submitted and those io_uring queued to its
# io-wq worker threads (tracepoints io_uring_submit_req and
# io_uring_queue_async_work), by opcode. Needs perf and root.
SPINDLE=$1; RATE=${2:-max}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/punts; rm -rf $D; mkdir -p target/bench-tmp
"$SPINDLE" serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/punts.log 2>&1 &
SP=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
(target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
  --batch-size 64KiB --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$RATE" --cores 0-0 2>&1 \
  | grep -E "^produced") &
sleep 4
perf record -q -e io_uring:io_uring_queue_async_work -e io_uring:io_uring_submit_req -p $SP -o target/bench-tmp/punts.data -- sleep 3
wait %2
kill $SP; wait $SP; rm -rf $D
perf script -i target/bench-tmp/punts.data 2>/dev/null \
  | awk '{ for (i = 1; i <= NF; i++) if ($i == "opcode") { sub(/,$/, "", $(i+1)); print $5, $(i+1); break } }' \
  | sed 's/io_uring:io_uring_submit_req:/submitted/; s/io_uring:io_uring_queue_async_work:/to io-wq/' | sort | uniq -c | sort -rn

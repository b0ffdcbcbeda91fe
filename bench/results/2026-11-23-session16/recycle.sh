#!/usr/bin/env bash
# usage: recycle.sh RATE ROUNDS [ACKS]
# The broker while retention deletes segments, with recycling of deleted
# segment files off and on, and the same broker without retention. All:
# 64 MiB segments; "deleting" adds --log-retention-bytes 256 MiB and a
# retention check every second, so that after the first seconds every
# partition deletes a segment about as often as it fills one.
# `spindle serve --cores 1-1` on a fresh data directory; the generator on
# CPU 0 at RATE (acks ACKS, default 1, 8 partitions, 1 KiB records, 64 KiB
# batches, linger 0.3 ms, 2 producers, 20 s with 5 s warm-up). Prints the
# client's ack latency, the broker's Produce, disk write and fdatasync
# latency (/metrics), segments recycled, the data left on disk and the
# device's discards (the root file system is mounted with `discard`).
# Before each run, the previous data directory is deleted and 15 s allowed
# for the discards that deletion causes. Session 15's retention.sh is the
# same without the recycling variants. RATE "max" runs closed loop with
# ${IN_FLIGHT:-16} requests in flight per producer, 30 s with 10 s warm-up.
# (recycle-300.txt was made before the throughput line was printed.)
RATE=$1; ROUNDS=${2:-1}; ACKS=${3:-1}
TIMING="--duration 20s --warmup 5s"
[ "$RATE" = max ] && TIMING="--duration 30s --warmup 10s --max-in-flight ${IN_FLIGHT:-16}"
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/recycle
one() {
  rm -rf $D; sync; sleep 15
  local d0; d0=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  # shellcheck disable=SC2086
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 \
    --log-segment-bytes 67108864 $1 > target/bench-tmp/recycle.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks "$ACKS" --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 $TIMING --rate "$RATE" --cores 0-0 2>&1 \
    | grep -E "^produced|^produce ack" | sed 's/^/  /'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p99 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.999"\}/ { p999 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.5"\}/ { w50 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.999"\}/ { w999 = $2 * 1000 }
    /^spindle_fsync_latency_seconds\{quantile="0.5"\}/ { f50 = $2 * 1000 }
    /^spindle_fsync_latency_seconds\{quantile="0.99"\}/ { f99 = $2 * 1000 }
    /^spindle_fsync_latency_seconds_count/ { fn = $2 }
    /^spindle_segments_recycled_total/ { rc = $2 }
    END { printf "  broker produce p99 %.2f p99.9 %.2f ms, write p50 %.2f p99 %.2f p99.9 %.2f ms, %d fdatasyncs p50 %.2f p99 %.2f ms, %d recycled", p99, p999, w50, w99, w999, fn, f50, f99, rc }'
  kill $sp; wait $sp 2>/dev/null
  local d1; d1=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  printf ", %s MiB on disk, %s discards\n" "$(du -sm $D | cut -f1)" "$((d1 - d0))"
  rm -rf $D
}
for r in $(seq "$ROUNDS"); do
  echo "### round $r rate $RATE acks $ACKS ($(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD) + working tree)"
  echo "keeping:";  one ""
  echo "deleting, recycling off:"; one "--log-retention-bytes 268435456 --log-retention-check-interval-ms 1000 --log-segment-recycle-enable false"
  echo "deleting, recycling on:"; one "--log-retention-bytes 268435456 --log-retention-check-interval-ms 1000 --log-segment-recycle-enable true"
done

#!/usr/bin/env bash
# usage: retention-paced.sh ROUNDS
# Retention deleting segments under 300 MiB/s of acks=1 produce, with
# recycling off, freeing the dropped files at once or through the reaper
# (paced, with and without Kafka's 60 s delay), against recycling on and
# against keeping everything. Session 16's recycle.sh setup: 64 MiB
# segments; "deleting" adds --log-retention-bytes 256 MiB and a retention
# check every second. `spindle serve --cores 1-1` on a fresh data
# directory; the generator on CPU 0 (8 partitions, 1 KiB records, 64 KiB
# batches, linger 0.3 ms, 2 producers, 60 s with 5 s warm-up, so that the
# 60 s delay ends within the run). Prints the client's ack latency, the
# broker's Produce and disk write latency (/metrics), segments recycled,
# the data left on disk and the device's discards (the root file system
# is mounted with `discard`). Before each run, the previous data
# directory is deleted and 45 s allowed for the discards it causes.
# ONLY=N1,N2 runs only those variants (1 keeping ... 5 recycling on);
# RUN_S sets the measured seconds (default 60).
ROUNDS=${1:-1}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/retention
mkdir -p target/bench-tmp
one() {
  rm -rf $D; sync; sleep 45
  local d0; d0=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  # shellcheck disable=SC2086
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 \
    --log-segment-bytes 67108864 $1 > target/bench-tmp/retention.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 --duration ${RUN_S:-60}s --warmup 5s --rate 300MiB --cores 0-0 2>&1 \
    | grep -E "^produced|^produce ack" | sed 's/^/  /'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p99 = $2 * 1000 }
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.999"\}/ { p999 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.5"\}/ { w50 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.999"\}/ { w999 = $2 * 1000 }
    /^spindle_segments_recycled_total/ { rc = $2 }
    END { printf "  broker produce p99 %.2f p99.9 %.2f ms, write p50 %.2f p99 %.2f p99.9 %.2f ms, %d recycled", p99, p999, w50, w99, w999, rc }'
  local held; held=$(find $D -name '*.deleted' | wc -l)
  kill $sp; wait $sp 2>/dev/null
  local d1; d1=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  printf ", %s MiB on disk (%s .deleted files), %s discards\n" "$(du -sm $D | cut -f1)" "$held" "$((d1 - d0))"
  rm -rf $D
}
DEL="--log-retention-bytes 268435456 --log-retention-check-interval-ms 1000"
for r in $(seq "$ROUNDS"); do
  echo "### round $r ($(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD))"
  i=0
  while IFS='|' read -r label args; do
    i=$((i + 1))
    [[ -n "${ONLY:-}" && ",$ONLY," != *",$i,"* ]] && continue
    echo "$label:"; one "$args"
  done <<VARIANTS
keeping|
deleting, recycling off, freed at once|$DEL --log-segment-recycle-enable false --log-deletion-max-bytes-per-sec 0 --log-segment-delete-delay-ms 0
deleting, recycling off, paced, no delay|$DEL --log-segment-recycle-enable false --log-segment-delete-delay-ms 0
deleting, recycling off, paced, 60 s delay (defaults)|$DEL --log-segment-recycle-enable false
deleting, recycling on (default)|$DEL
VARIANTS
done

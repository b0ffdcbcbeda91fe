#!/usr/bin/env bash
# usage: delete-topic.sh ROUNDS
# What deleting a big topic does to the producers of another. Broker:
# `spindle serve --cores 1-1` on a fresh data directory, default segments
# (1 GiB). First topic b is filled closed loop for FILL_S (default 8) s
# (8 partitions, acks=1) and left SETTLE_S (default 45) s for the host to
# write back; then topic a is produced at 300 MiB/s (acks=1,
# 8 partitions, 1 KiB records, 64 KiB batches, linger 0.3 ms, 2 producers,
# RUN_S (default 40) s with 3 s warm-up, generator on CPU 0). In the
# "delete" runs topic b is deleted (confluent-kafka's admin client) 10 s
# into that run, with the broker's default pacing of the deletion
# (log.deletion.max.bytes.per.sec, 256 MiB/s) or without it (0); in the
# "keep" runs it is not deleted. The "truncate" mode (an experiment made
# before the pacing was built) shrinks b's files from outside the broker
# instead, CHUNK_MIB every 100 ms. Prints b's size, the deletion's own time, the
# client's ack latency over the run and the worst second's p99 and p99.9
# (the generator's per-second timeline), and the device's discards.
# Added in session 18, the defaults unchanged: HOW=retention lowers b's
# retention.ms to 1 s instead of deleting b (incrementalAlterConfigs), so
# that retention drops b's sealed segments at once; SERVE_ARGS adds
# broker flags to every run; B_SEGMENT_BYTES creates b (8 partitions)
# with that segment.bytes before the fill; RUNS="keep unpaced paced"
# (the default) picks the runs of each round.
# Added in session 19: SPINDLE runs another broker binary (default
# target/release/spindle), so that two builds compare in one round; the
# line per run adds the device's completed discards and flushes (columns
# 15 and 19 of /proc/diskstats; the "discards" it printed before, and
# still prints, are column 16, the discards the block layer merged).
ROUNDS=${1:-1}
FILL_S=${FILL_S:-8}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/delete-topic
mkdir -p target/bench-tmp
PY=target/interop-venv/bin/python
one() { # keep|delete
  rm -rf $D target/bench-tmp/delete-topic-out; sync; sleep 10
  ${SPINDLE:-target/release/spindle} serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 ${SERVE_ARGS:-} "$@" \
    > target/bench-tmp/delete-topic.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  if [ -n "${B_SEGMENT_BYTES:-}" ]; then
    $PY - "$B_SEGMENT_BYTES" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": "127.0.0.1:39292"})
t = NewTopic("b", 8, 1, config={"segment.bytes": sys.argv[1]})
a.create_topics([t])["b"].result()
PY
  fi
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic b --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 --duration "${FILL_S}s" --warmup 0s --rate max --max-in-flight 16 \
    --cores 0-0 > /dev/null 2>&1
  local bsize; bsize=$(du -sm $D/b-* | awk '{ s += $1 } END { print s }')
  sync; sleep "${SETTLE_S:-45}"
  local d0; d0=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  local dc0 f0; read -r dc0 f0 < <(awk '$3 == "vda" { print $15, $19 }' /proc/diskstats)
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic a --acks 1 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 0.3ms --producers 2 --duration "${RUN_S:-40}s" --warmup 3s --rate 300MiB --cores 0-0 \
    --out target/bench-tmp/delete-topic-out > target/bench-tmp/delete-topic.out 2>&1 &
  local gp=$!
  local took=-
  if [ "$MODE" = delete ]; then
    sleep 10
    took=$($PY - 2>/dev/null <<'PY'
import os, time
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
a = AdminClient({"bootstrap.servers": "127.0.0.1:39292"})
t = time.monotonic()
if os.environ.get("HOW") == "retention":
    op = AlterConfigOpType.SET
    r = ConfigResource(ResourceType.TOPIC, "b", incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=op)])
    a.incremental_alter_configs([r])[r].result()
else:
    a.delete_topics(["b"], operation_timeout=60)["b"].result()
print("%.2f s" % (time.monotonic() - t))
PY
)
  elif [ "$MODE" = truncate ]; then
    # Experiment: shrink b's files from outside in CHUNK_MIB steps every
    # 100 ms (the broker keeps them open, so only truncation frees blocks).
    sleep 10
    local t0; t0=$(date +%s.%N)
    $PY - "$CHUNK_MIB" $D/b-*/*.log <<'PY'
import os, sys, time
chunk = int(sys.argv[1]) << 20
for p in sys.argv[2:]:
    size = os.path.getsize(p)
    while size > 0:
        size = max(0, size - chunk)
        os.truncate(p, size)
        time.sleep(0.1)
PY
    took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f s", b - a }')
  fi
  wait $gp
  local d1; d1=$(awk '$3 == "vda" { print $16 }' /proc/diskstats)
  local dc1 f1; read -r dc1 f1 < <(awk '$3 == "vda" { print $15, $19 }' /proc/diskstats)
  # b's directories, tombstones included, at the end of the run.
  local bleft; bleft=$(du -sm $D/b-* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
  printf "  %-8s %-40s b %5s MiB (%s MiB left at the end), delete took %s, %s discards\n" "$MODE" "$*" "$bsize" "$bleft" "$took" "$((d1 - d0))"
  echo "    device: $((dc1 - dc0)) discards completed, $((f1 - f0)) flushes"
  grep -E "^produced|^produce ack" target/bench-tmp/delete-topic.out | sed 's/^/    /'
  $PY - <<'PY'
import json
s = json.load(open("target/bench-tmp/delete-topic-out/summary.json"))
tl = s["timeline"]
w = max(tl, key=lambda x: x["p999_ms"])
print("    worst second t=%.0f: p99 %.1f p99.9 %.1f ms; seconds with p99 > 10 ms: %d of %d" % (
    w["t"], w["p99_ms"], w["p999_ms"], sum(1 for x in tl if x["p99_ms"] > 10), len(tl)))
PY
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
for r in $(seq "$ROUNDS"); do
  echo "### round $r ($(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD) + working tree)"
  for run in ${RUNS:-keep unpaced paced}; do
    case $run in
      keep) MODE=keep one ;;
      unpaced) MODE=delete one --log-deletion-max-bytes-per-sec 0 ;;
      paced) MODE=delete one ;;
    esac
  done
done

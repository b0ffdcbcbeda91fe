#!/usr/bin/env bash
# usage: journal-targets.sh [PAIRS]
# Issue 3's targets with the ack journal, and the host's limits, in one run:
# `spindle-bench limits` (fio 1 MiB direct writes QD1/QD8/QD32, fdatasync
# latency); closed-loop peaks with the journal on (acks=1 with 256 KiB and
# 64 KiB batches, twice each; acks=all with 256 KiB); then PAIRS pairs of
# open-loop acks=1 runs at half of each batch size's first peak, the
# journal off (`--ack-journal-dir off`) and on alternately; then the limits
# again. Every run: `spindle serve --cores 1-1` on a fresh data directory,
# the generator on CPU 0, 2 producers, 8 partitions, 1 KiB records, 16
# requests in flight each, linger 0.3 ms, 10 s after 3 s of warm-up.
# Prints the client's ack latency (from when each record was due), the
# broker's Produce p99 and segment-write p99/p99.9 (whole run), and how
# many appends the journal held and found it full.
PAIRS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/journal-targets
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
one() { # ACKS BATCH RATE JOURNAL(on|off)
  rm -rf $D
  local extra=""
  [ "$4" = off ] && extra="--ack-journal-dir off"
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39592 --admin-listen 127.0.0.1:39593 --cores 1-1 \
    $extra > target/bench-tmp/journal-targets.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39592) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39592 --topic t --acks "$1" --partitions 8 \
    --record-size 1024 --batch-size "$2" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$3" \
    --max-in-flight 16 --cores 0-0 > target/bench-tmp/journal-targets.out 2>&1
  printf "acks %-3s batch %-6s rate %-8s journal %-3s" "$1" "$2" "$3" "$4"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/journal-targets.out | tr -d '\n'
  sed -n 's/^produce ack latency.*: \(p50 [0-9.]*\) .* \(p99 [0-9.]*\)  \(p99.9 [0-9.]*\) .*/  client \1 \2 \3/p' \
    target/bench-tmp/journal-targets.out | tr -d '\n'
  curl -s 127.0.0.1:39593/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.999"\}/ { w999 = $2 * 1000 }
    /^spindle_ack_journal_appends_total/ { held = $2 }
    /^spindle_ack_journal_full_total/ { full = $2 }
    END { printf "  broker produce p99 %.2f  write p99 %.2f p99.9 %.2f  journaled %d full %d\n", p, w99, w999, held, full }'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
peak_of() { sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9]*\)\.[0-9]* MiB\/s.*/\1/p' target/bench-tmp/journal-targets.out; }
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['
echo "## peaks ($(date -u +%H:%M:%S) UTC)"
one 1 256KiB max on; half256=$(( $(peak_of) / 2 ))
one 1 256KiB max on
one 1 64KiB max on; half64=$(( $(peak_of) / 2 ))
one 1 64KiB max on
one all 256KiB max on
echo "## half of each first peak: ${half256} MiB/s with 256 KiB, ${half64} MiB/s with 64 KiB ($(date -u +%H:%M:%S) UTC)"
for _ in $(seq "$PAIRS"); do
  one 1 64KiB "${half64}MiB" off
  one 1 64KiB "${half64}MiB" on
  one 1 256KiB "${half256}MiB" off
  one 1 256KiB "${half256}MiB" on
done
echo "## limits again ($(date -u +%H:%M:%S) UTC)"
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['

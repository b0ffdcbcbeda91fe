#!/usr/bin/env bash
# usage: targets.sh [ROUNDS] [OFF_ROUNDS]
# Issue 3's acks=1 targets and this host's limits in one run:
# - the scheduling floor: hiccup.c spinning on each CPU for 10 s with
#   nothing else of ours running (the gaps are time the spinner did not
#   run: other tasks, interrupts, or the hypervisor);
# - `spindle-bench limits` (fio 1 MiB direct writes QD1/QD8/QD32,
#   fdatasync latency, ...);
# - closed-loop acks=1 peaks with 256 KiB and 64 KiB batches, twice each;
# - ROUNDS rounds (default 8) of open-loop acks=1 runs at half of each
#   batch size's first peak, kdamond running (the output says "host as
#   booted"; in targets.txt kdamond had been restarted 2 minutes before);
# - OFF_ROUNDS rounds (default 2) with the VM's DAMON reclaim thread
#   stopped (kdamonds/0/state off; started again on exit), and the
#   scheduling floor again in that state;
# - the limits again.
# The exit trap in the version that produced targets.txt wrote "on" to a
# kdamond already on ("Device or resource busy", no effect).
# Every run: `spindle serve --cores 1-1` (ack journal on, the default) on a
# fresh data directory, the generator on CPU 0, 2 producers, 8 partitions,
# 1 KiB records, 16 requests in flight each, linger 0.3 ms, 10 s including
# 3 s of warm-up (7 s measured). Prints the client's ack latency (from
# when each record was due), the broker's Produce p99 and segment-write p99/p99.9 (whole run),
# and how many appends the journal held and found it full.
ROUNDS=${1:-8}; OFF_ROUNDS=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/targets
K=/sys/kernel/mm/damon/admin/kdamonds/0/state
mkdir -p target/bench-tmp
command -v fio >/dev/null || apt-get install -y -qq fio >/dev/null
gcc -O2 -o target/bench-tmp/hiccup "$here/hiccup.c"
trap '[ -w $K ] && [ "$(cat $K)" = off ] && echo on > $K' EXIT
floor() {
  echo "## scheduling floor, kdamond $(cat $K 2>/dev/null || echo absent) ($(date -u +%H:%M:%S) UTC)"
  target/bench-tmp/hiccup 0 10 > target/bench-tmp/hiccup0.txt & target/bench-tmp/hiccup 1 10; wait
  cat target/bench-tmp/hiccup0.txt
}
one() { # BATCH RATE
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39692 --admin-listen 127.0.0.1:39693 --cores 1-1 \
    > target/bench-tmp/targets.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39692) 2>/dev/null && break; sleep 0.1; done
  target/release/spindle-bench produce --bootstrap 127.0.0.1:39692 --topic t --acks 1 --partitions 8 \
    --record-size 1024 --batch-size "$1" --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate "$2" \
    --max-in-flight 16 --cores 0-0 > target/bench-tmp/targets.out 2>&1
  printf "%s batch %-6s rate %-8s" "$(date -u +%H:%M:%S)" "$1" "$2"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/targets.out | tr -d '\n'
  sed -n 's/^produce ack latency.*: \(p50 [0-9.]*\) .* \(p99 [0-9.]*\)  \(p99.9 [0-9.]*\) .*/  client \1 \2 \3/p' \
    target/bench-tmp/targets.out | tr -d '\n'
  curl -s 127.0.0.1:39693/metrics | awk '
    /^spindle_request_total_latency_seconds\{api="Produce",quantile="0.99"\}/ { p = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.99"\}/ { w99 = $2 * 1000 }
    /^spindle_disk_write_latency_seconds\{quantile="0.999"\}/ { w999 = $2 * 1000 }
    /^spindle_ack_journal_appends_total/ { held = $2 }
    /^spindle_ack_journal_full_total/ { full = $2 }
    END { printf "  broker produce p99 %.2f  write p99 %.2f p99.9 %.2f  journaled %d full %d\n", p, w99, w999, held, full }'
  kill $sp; wait $sp 2>/dev/null
  rm -rf $D
}
peak_of() { sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9]*\)\.[0-9]* MiB\/s.*/\1/p' target/bench-tmp/targets.out; }
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
floor
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['
echo "## peaks ($(date -u +%H:%M:%S) UTC)"
one 256KiB max; half256=$(( $(peak_of) / 2 ))
one 256KiB max
one 64KiB max; half64=$(( $(peak_of) / 2 ))
one 64KiB max
echo "## half of each first peak, host as booted: ${half256} MiB/s with 256 KiB, ${half64} MiB/s with 64 KiB"
for _ in $(seq "$ROUNDS"); do
  one 64KiB "${half64}MiB"
  one 256KiB "${half256}MiB"
done
if [ -w $K ] && [ "$OFF_ROUNDS" -gt 0 ]; then
  echo off > $K
  echo "## the same with kdamond stopped ($(date -u +%H:%M:%S) UTC)"
  for _ in $(seq "$OFF_ROUNDS"); do
    one 64KiB "${half64}MiB"
    one 256KiB "${half256}MiB"
  done
  floor
  echo on > $K
fi
echo "## limits again ($(date -u +%H:%M:%S) UTC)"
target/release/spindle-bench limits --dir target/bench-tmp 2>&1 | grep -v '^\['

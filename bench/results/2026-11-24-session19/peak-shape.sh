#!/usr/bin/env bash
# usage: peak-shape.sh
# Does the closed-loop acks=1 peak (about 1.19 GiB/s in targets.txt, flat
# from 8 to 32 requests in flight) move with the load's shape? peak.sh's
# run (fresh `spindle serve --cores 1-1`, generator on CPU 0, 1 KiB
# records, 64 KiB batches, linger 0.3 ms, 16 in flight, 10 s with 3 s
# warm-up) with 2 or 4 producers, 8 or 32 partitions, and 64 KiB or
# 256 KiB batches. Prints throughput, client ack p50/p99, the broker's
# average disk write, and each process's CPU.
cd "$(git rev-parse --show-toplevel)"
D=target/bench-tmp/peak-shape
mkdir -p target/bench-tmp
one() { # PRODUCERS PARTITIONS BATCH
  rm -rf $D
  target/release/spindle serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 \
    > target/bench-tmp/peak-shape.log 2>&1 &
  local sp=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
  local c0 t0 c1 t1
  c0=$(awk '{print $14+$15}' /proc/$sp/stat); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %e" -o target/bench-tmp/peak-shape.time target/release/spindle-bench produce \
    --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions "$2" --record-size 1024 --batch-size "$3" \
    --linger 0.3ms --producers "$1" --duration 10s --warmup 3s --rate max --max-in-flight 16 --cores 0-0 \
    > target/bench-tmp/peak-shape.out 2>&1
  c1=$(awk '{print $14+$15}' /proc/$sp/stat); t1=$(date +%s.%N)
  printf "producers %s partitions %-2s batch %-6s" "$1" "$2" "$3"
  sed -n 's/.*warm-up: [0-9]* rec\/s, \([0-9.]*\) MiB\/s.*/ \1 MiB\/s/p' target/bench-tmp/peak-shape.out | tr -d '\n'
  sed -n 's/.*ack latency.*: \(p50 [0-9.]*\) .*\(p99 [0-9.]*\) .*/  client \1 \2/p' target/bench-tmp/peak-shape.out | tr -d '\n'
  curl -s 127.0.0.1:39293/metrics | awk '
    /^spindle_disk_writes_total/ { n = $2 } /^spindle_disk_write_bytes_total/ { b = $2 }
    END { printf "  write avg %.0f KiB", b / n / 1024 }'
  kill $sp; wait $sp 2>/dev/null
  awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "  broker cpu %.0f%%", c / (t1 - t0) }'
  awk '{ printf "  generator cpu %.0f%%\n", 100 * ($1 + $2) / $3 }' target/bench-tmp/peak-shape.time
  rm -rf $D
}
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD)"
for round in 1 2; do
  one 2 8 64KiB
  one 4 8 64KiB
  one 2 32 64KiB
  one 2 8 256KiB
done

#!/usr/bin/env bash
# The broker section of bench/RESULTS.md: spindle serve on this host, loaded
# over loopback by spindle-bench, with the host's limits measured in the
# same run. Usage: bench/scripts/broker-bench.sh [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/target/broker-bench/$(date -u +%Y-%m-%dT%H%M)}"
B="$ROOT/target/release/spindle-bench"
S="$ROOT/target/release/spindle"
DATA="$ROOT/target/bench-tmp/broker"
PORT=39292
mkdir -p "$OUT"
cargo build --release -p spindle-tools -p spindle-bench >/dev/null
echo "date: $(date -u)  nproc: $(nproc)  commit: $(git -C "$ROOT" rev-parse --short HEAD)" | tee "$OUT/machine.txt"

# Physical limits, same run (shorter than the engine run's: 1 GiB files, 5 s).
"$B" limits --dir "$ROOT/target/bench-tmp" --size-mib 1024 --runtime-s 5 --repeat 1 --json "$OUT/limits.json" | tee "$OUT/limits.txt"

broker() {
    rm -rf "$DATA"
    "$S" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$((PORT + 1)) --cores 2 >"$OUT/broker-$1.log" 2>&1 &
    BROKER=$!
    for _ in $(seq 100); do "$B" produce --bootstrap 127.0.0.1:$PORT --topic warm --partitions 1 --records 1 --duration 2s --warmup 0s >/dev/null 2>&1 && break; sleep 0.1; done
}
stop() { kill -TERM "$BROKER"; wait "$BROKER" || true; }
W=(--partitions 8 --record-size 1024 --batch-size 64KiB --linger 2ms --producers 2 --duration 20s --warmup 5s)

for acks in 1 all; do
    broker "peak-acks-$acks"
    "$B" produce --bootstrap 127.0.0.1:$PORT --topic peak --acks $acks "${W[@]}" --rate max --out "$OUT/peak-acks-$acks" | tee "$OUT/peak-acks-$acks.txt"
    stop
    peak=$(python3 -c "import json;print(json.load(open('$OUT/peak-acks-$acks/summary.json'))['produced']['mib_per_s'])")
    half=$(python3 -c "print(f'{float(\"$peak\")/2:.1f}')")
    broker "half-acks-$acks"
    "$B" produce --bootstrap 127.0.0.1:$PORT --topic half --acks $acks "${W[@]}" --rate "${half}MiB" --out "$OUT/half-acks-$acks" | tee "$OUT/half-acks-$acks.txt"
    stop
done

# A caught-up consumer: produce at a fixed rate, consume at the tail.
broker e2e
"$B" e2e --bootstrap 127.0.0.1:$PORT --topic e2e --acks 1 "${W[@]}" --rate 100MiB --consumers 1 --out "$OUT/e2e" | tee "$OUT/e2e.txt"
stop

# The generator's own ceiling.
"$B" null-sink --listen 127.0.0.1:$((PORT + 2)) --cores 0 >/dev/null 2>&1 &
SINK=$!
sleep 0.5
"$B" produce --bootstrap 127.0.0.1:$((PORT + 2)) --topic sink --acks 1 "${W[@]}" --rate max --out "$OUT/null-sink" | tee "$OUT/null-sink.txt"
kill "$SINK"

# 10,000 idle and half-open connections.
broker idle
python3 "$ROOT/bench/scripts/idle-connections.py" --pid "$BROKER" --bootstrap 127.0.0.1:$PORT --connections 10000 | tee "$OUT/idle.txt"
stop
echo "results in $OUT"

#!/usr/bin/env bash
# Reproduces the run recorded in bench/RESULTS.md: machine facts, this host's
# limits (fio), the engine end to end (spindle-bench engine), the criterion
# micro-benches (cargo bench -p spindle-engine), and the markdown tables.
#
#   bench/run-engine-bench.sh                 # everything, ~10 minutes
#   SKIP_CRITERION=1 bench/run-engine-bench.sh
#
# BENCH_DIR: where data files go; must be on the disk under test, not tmpfs
#            (default target/bench-tmp, on the same filesystem as the repo).
# BENCH_OUT: where results go (default target/bench-results).
# BENCH_CPU: core the engine executor is pinned to (default 1).
# Each step first waits (up to IDLE_WAIT_S, default 300 s) for the machine
# to be idle, since the numbers are only meaningful on a quiet host, and
# records how busy it was when it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${BENCH_DIR:-$ROOT/target/bench-tmp}
OUT=${BENCH_OUT:-$ROOT/target/bench-results}
CPU=${BENCH_CPU:-1}
IDLE_WAIT_S=${IDLE_WAIT_S:-300}
mkdir -p "$DIR" "$OUT"

if ! command -v fio >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq fio >/dev/null
    else
        echo "fio not installed: limits fall back to built-in loops" >&2
    fi
fi

cargo build --release -p spindle-bench
B=$ROOT/target/release/spindle-bench

# Percent of CPU busy over one second, from /proc/stat.
busy_pct() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 1
    read -r -a b < <(head -1 /proc/stat)
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( 100 - 100 * idle / (total > 0 ? total : 1) ))
}

# Waits until the machine is <= 10% busy, then logs how busy it was.
wait_idle() {
    local start=$SECONDS b
    while b=$(busy_pct); [ "$b" -gt 10 ] && [ $(( SECONDS - start )) -lt "$IDLE_WAIT_S" ]; do
        sleep 4
    done
    echo "$(date -u +%H:%M:%S) $1: host ${b}% busy at start" | tee -a "$OUT/load.txt" >&2
}

: > "$OUT/load.txt"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "rustc: $(rustc --version)"
    echo "fio: $(fio --version 2>/dev/null || echo absent)"
    echo "RLIMIT_MEMLOCK: $(ulimit -l) KiB"
    echo "engine measured: commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- engine/src 2>/dev/null || echo ' + uncommitted changes in engine/src')"
    echo
    df -hT "$DIR"
    echo
    lsblk -o NAME,SIZE,TYPE,ROTA,LOG-SEC,PHY-SEC,MOUNTPOINT
    dev=$(basename "$(readlink -f "/sys/dev/block/$(mountpoint -d "$(df --output=target "$DIR" | tail -1)")")")
    echo
    for f in scheduler max_sectors_kb max_segments nr_requests write_cache logical_block_size physical_block_size; do
        echo "$dev queue/$f: $(cat "/sys/block/$dev/queue/$f" 2>/dev/null || echo '?')"
    done
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

wait_idle limits
"$B" limits --dir "$DIR" --json "$OUT/limits.json" | tee "$OUT/limits.txt"

engine() {
    local name=$1
    shift
    wait_idle "engine $name"
    echo "+ spindle-bench engine --dir $DIR --cpu $CPU $*" | tee "$OUT/engine-$name.txt"
    "$B" engine --dir "$DIR" --cpu "$CPU" --json "$OUT/engine-$name.json" "$@" | tee -a "$OUT/engine-$name.txt"
}

# The headline: 16 KiB batches (a typical producer batch.size), durability
# asked for every MiB, three runs, each between two runs of fio's 1 MiB
# direct-write job (the disk's bandwidth drifts on a shared virtual disk).
for i in 1 2 3; do
    engine "append-16k-$i" --mode append --batch-bytes 16384 --total-mib 2048 --sync-every-mib 1 \
        --reference-iodepth 8
done
# Diagnostics: the same without fdatasync; 1 MiB batches; fewer in flight.
engine append-16k-nosync --mode append --batch-bytes 16384 --total-mib 2048 --sync-every-mib 0
engine append-16k-inflight2 --mode append --batch-bytes 16384 --total-mib 2048 --sync-every-mib 1 --inflight-mib 2
engine append-1m --mode append --batch-bytes 1048576 --total-mib 2048 --sync-every-mib 1
engine read-cached --mode read-cached --batch-bytes 16384 --total-mib 8192
engine read-cold --mode read-cold --batch-bytes 16384 --total-mib 2048
engine recovery --mode recovery --batch-bytes 16384 --recovery-mib 1024 --repeat 3

engines=()
for f in "$OUT"/engine-*.json; do engines+=(--engine "$f"); done
"$B" report --limits "$OUT/limits.json" "${engines[@]}" | tee "$OUT/tables.md"

if [ -z "${SKIP_CRITERION:-}" ]; then
    wait_idle criterion
    cargo bench -p spindle-engine --bench hot_paths 2>&1 | tee "$OUT/criterion.txt"
fi
echo "results in $OUT"

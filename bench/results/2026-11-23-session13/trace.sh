#!/usr/bin/env bash
# usage: trace.sh [SPINDLE_BENCH]
# Records block-layer, io_uring and scheduler events on CPU 1 during one
# engine append run (16 KiB batches, fdatasync every MiB, 2 GiB), then
# prints the gaps around each fdatasync and the events around the 100th
# and 150th fdatasync completions (trace-fdatasync.py).
BIN=${1:-target/release/spindle-bench}
cd "$(git rev-parse --show-toplevel)"
HERE=bench/results/2026-11-23-session13
mkdir -p target/bench-tmp && rm -rf target/bench-tmp/*
perf record -q -o target/bench-tmp/trace.data \
  -e block:block_rq_issue,block:block_rq_complete,io_uring:io_uring_submit_req,io_uring:io_uring_complete,sched:sched_switch \
  -C 1 -- "$BIN" engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 --total-mib 2048 \
  --sync-every-mib 1 --reference-iodepth 0 2>&1 | grep -E "^append"
perf script -i target/bench-tmp/trace.data 2>/dev/null > target/bench-tmp/trace.txt
python3 $HERE/trace-fdatasync.py target/bench-tmp/trace.txt 100 150

#!/usr/bin/env bash
# usage: reads.sh [RUNS]
# Cold sequential reads and recovery of a 1 GiB unclean segment, with the
# direct-I/O buffers on huge pages (default) and on 4 KiB pages
# (--small-page-buffers), alternating.
RUNS=${1:-2}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
for run in $(seq "$RUNS"); do
  for b in huge small; do
    args=""; [ $b = small ] && args="--small-page-buffers"
    echo "### run $run $b pages: read-cold ($(date -u +%H:%M:%S) UTC)"
    target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode read-cold --total-mib 2048 $args 2>/dev/null
    echo "### run $run $b pages: recovery"
    target/release/spindle-bench engine --dir target/bench-tmp --cpu 1 --mode recovery --recovery-mib 1024 --repeat 3 $args 2>/dev/null
  done
done

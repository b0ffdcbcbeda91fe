#!/usr/bin/env bash
# usage: OLD=path/to/old/spindle-bench replay-ab.sh [ROUNDS]
# What rebuilding the producer state from the recovery scan (instead of
# reading the scanned tail again) saves at an unclean open: issue 2's
# recovery run (a 1 GiB active segment dropped without close, its index
# files deleted, `Log::open` timed three times), old build (OLD) and new
# (target/release) alternating in each round, on CPU 1.
ROUNDS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
NEW=target/release/spindle-bench
echo "### $(date -u +%H:%M:%S) UTC, new $(git rev-parse --short HEAD)+worktree, old $OLD"
for round in $(seq "$ROUNDS"); do
  for side in old new; do
    B=$NEW; [ $side = old ] && B=$OLD
    echo "## round $round $side recovery ($(date -u +%H:%M:%S) UTC)"
    $B engine --dir target/bench-tmp --cpu 1 --mode recovery --batch-bytes 16384 --recovery-mib 1024 --repeat 3 2>&1 \
      | grep -E 'recovery open'
  done
done

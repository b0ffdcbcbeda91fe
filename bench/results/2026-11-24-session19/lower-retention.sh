#!/usr/bin/env bash
# usage: lower-retention.sh ROUNDS
# Session 18's stall on lowering a large topic's retention, before and
# after session 19's change (retention deletes segments without an
# fdatasync each and with one directory sync for all). Each round runs
# session 17's delete-topic.sh three times with HOW=retention: topic b
# filled in 128 MiB segments, then 10 s into 300 MiB/s of acks=1 produce
# to topic a, b's retention.ms set to 1 s; the deletion delay is 0 so the
# freeing (paced, 256 MiB/s) happens within the run, and retention runs
# every second. The runs: "keep"
# (nothing lowered, the host's noise), then the old build (OLD, default
# target/bench-tmp/spindle-7ca5267, built from 7ca5267), then the new one
# (target/release/spindle).
# After each run it prints how long the retention run that dropped b's
# segments took (from the first partition's "retention deleted segments"
# log line to the last) and topic a's p99 per second from t=8 to t=30.
ROUNDS=${1:-1}
cd "$(git rev-parse --show-toplevel)"
S=bench/results/2026-11-24-session17/delete-topic.sh
export HOW=retention B_SEGMENT_BYTES=134217728 SERVE_ARGS="--log-segment-delete-delay-ms 0 --log-retention-check-interval-ms 1000"
OLD=${OLD:-target/bench-tmp/spindle-7ca5267}
after() { target/interop-venv/bin/python bench/results/2026-11-24-session19/after-run.py; }
for r in $(seq "$ROUNDS"); do
  echo "## round $r"
  RUNS=keep bash $S 1; after
  echo "  (old build: $OLD)"
  SPINDLE=$OLD RUNS=paced bash $S 1; after
  echo "  (new build: target/release/spindle)"
  RUNS=paced bash $S 1; after
done

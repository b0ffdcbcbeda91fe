#!/usr/bin/env bash
# usage: lower-retention-nodiscard.sh
# lower-retention.sh's "new build" run once, with the root file system
# (the data directory's) remounted without online discard for the run and
# the `discard` option restored after it.
cd "$(git rev-parse --show-toplevel)"
mount -o remount,nodiscard / || exit 1
echo "## mount options: $(findmnt -no OPTIONS /)"
export HOW=retention B_SEGMENT_BYTES=134217728 SERVE_ARGS="--log-segment-delete-delay-ms 0 --log-retention-check-interval-ms 1000"
for run in keep paced; do
  RUNS=$run bash bench/results/2026-11-24-session17/delete-topic.sh 1
  target/interop-venv/bin/python bench/results/2026-11-24-session19/after-run.py
done
mount -o remount,discard /
echo "## mount options after: $(findmnt -no OPTIONS /)"

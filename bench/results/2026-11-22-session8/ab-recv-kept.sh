#!/usr/bin/env bash
# The kept read path (dd5e47d, /tmp/spindle-recv) against 06f64f9
# (/tmp/spindle-base) at 450 MiB/s, acks=1, alternating, three pairs.
cd "$(git rev-parse --show-toplevel)"
date -u
for pair in 1 2 3; do
  for build in base recv; do
    echo "### pair $pair build $build acks=1 rate 450MiB"
    SPINDLE=/tmp/spindle-$build TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh 450MiB 1 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done
date -u

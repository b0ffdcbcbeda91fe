#!/usr/bin/env bash
# usage: ab-env.sh VAR A B BINARY
# Three alternating pairs at 450 MiB/s, acks=1 (lat.sh of session 7), with
# the broker BINARY run under VAR=A, then VAR=B. The experiment builds read
# SPINDLE_SPIN_US (spin_before_park) or SPINDLE_PREEMPT_US (preempt_timer)
# in net/src/server.rs; neither patch was committed.
# ab-spin.txt:    ab-env.sh SPINDLE_SPIN_US 0 200 /tmp/spindle-spin
# ab-preempt.txt: ab-env.sh SPINDLE_PREEMPT_US 100000 500 /tmp/spindle-pt
VAR=$1; A=$2; B=$3; BIN=$4
cd "$(git rev-parse --show-toplevel)"
for pair in 1 2 3; do
  for v in "$A" "$B"; do
    echo "### pair $pair $VAR=$v acks=1 rate 450MiB"
    env "$VAR=$v" SPINDLE="$BIN" TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh 450MiB 1 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

#!/usr/bin/env bash
# The session's final A/B (doorbell with 500 us ring spacing vs none), all
# interleaved: broker acks=1 peak (5 pairs), broker at 250 MiB/s (3 pairs),
# engine append (5 pairs). Prints /proc/stat steal before and after.
cd "$(git rev-parse --show-toplevel)"
R=bench/results/2026-11-23-session10
steal() { awk '/^cpu /{print "steal jiffies", $9}' /proc/stat; }
steal
bash $R/ab-broker.sh max 5
bash $R/ab-broker.sh 250MiB 3
bash $R/ab-engine.sh 5
steal

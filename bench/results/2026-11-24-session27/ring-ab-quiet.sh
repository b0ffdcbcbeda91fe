#!/usr/bin/env bash
# usage: ring-ab-quiet.sh PAIRS [RATE] [BATCH]
# Session 26's ring-ab.sh (the ack journal's ring at 16 MiB against 64 MiB
# per core, alternately) with the VM's DAMON reclaim thread stopped for the
# length of the run and started again on exit.
K=/sys/kernel/mm/damon/admin/kdamonds/0/state
cd "$(git rev-parse --show-toplevel)"
trap '[ -w $K ] && [ "$(cat $K)" = off ] && echo on > $K' EXIT
[ -w $K ] && echo off > $K
echo "kdamond $(cat $K 2>/dev/null || echo absent)"
bash bench/results/2026-11-24-session26/ring-ab.sh "${1:-3}" "${2:-1186MiB}" "${3:-256KiB}"

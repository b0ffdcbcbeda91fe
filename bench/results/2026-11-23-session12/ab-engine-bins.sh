#!/usr/bin/env bash
# usage: ab-engine-bins.sh PAIRS LABEL=BENCH_BINARY...
# The engine append benchmark (16 KiB batches, fdatasync every MiB, 2 GiB,
# CPU 1, default task quota) with each binary in turn, PAIRS rounds; one
# line per run: MiB/s, executor CPU per MiB, doorbell rings, segment write
# p50, share of the run in fdatasync, device queue depth and busy time.
PAIRS=$1; shift
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
for round in $(seq "$PAIRS"); do
  for lb in "$@"; do
    label=${lb%%=*}; bin=${lb#*=}
    printf '%s ' "$label"
    "$bin" engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 --total-mib 2048 \
      --sync-every-mib 1 --reference-iodepth 0 2>/dev/null | tr -s ' ' | awk '
      /^append/ { printf "%s MiB/s ", $2 }
      /^ cpu/ { for (i = 1; i <= NF; i++) if ($i == "thread") printf "cpu %s ms/MiB ", $(i+1); for (i = 1; i <= NF; i++) if ($i == "rings") printf "rings %s ", $(i-1) }
      /^ log I\/O/ { printf "write p50 %s us fdatasync %s ", $7, $(NF-3) }
      /^ device/ { printf "qd %s busy %s\n", $12, $14 }'
  done
done

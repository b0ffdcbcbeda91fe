#!/usr/bin/env bash
# usage: ab-engine.sh PAIRS LABEL=BENCH_BINARY...
# The engine append benchmark (16 KiB batches, fdatasync every MiB, 2 GiB,
# 16 MiB in flight, CPU 1, default task quota) with each binary in turn,
# PAIRS rounds, each run bracketed by fio 1 MiB QD8 direct writes with
# huge-page buffers (/mnt/huge) and with fio's default buffers. One line
# per run: MiB/s, the mean of the two fio runs of each kind and the
# ratios, append latency, the wait of a durability request (p50/p99),
# fdatasyncs and their latency, write rounds submitted while one was in
# flight, device busy time.
PAIRS=$1; shift
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
for round in $(seq "$PAIRS"); do
  echo "### round $round ($(date -u +%H:%M:%S) UTC)"
  for lb in "$@"; do
    label=${lb%%=*}; bin=${lb#*=}
    printf '%-8s ' "$label"
    "$bin" engine --dir target/bench-tmp --cpu 1 --mode append --batch-bytes 16384 --total-mib 2048 \
      --sync-every-mib 1 --reference-iodepth 8 --reference-hugetlbfs /mnt/huge 2>&1 | tr -s ' ' | awk '
      /reference (before|after), buffers on huge pages/ { f += $(NF-1); n++ }
      /reference (before|after): / { g += $(NF-1); m++ }
      /^append/ { a = $2 }
      /sync requests/ { for (i = 1; i <= NF; i++) if ($i == "append" && $(i+1) == "p50") { ap50 = $(i+2); ap99 = $(i+5) }
        for (i = 1; i <= NF; i++) if ($i == "requests") { sp50 = $(i+2); sp99 = $(i+5) } }
      /^ log I\/O/ { for (i = 1; i <= NF; i++) if ($i == "fdatasyncs") { fs = $(i-1); fp50 = $(i+2) }
        for (i = 1; i <= NF; i++) if ($i == "rounds" && $(i+1) == "beside") beside = $(i-2) }
      /^ device/ { for (i = 1; i <= NF; i++) if ($i == "busy") busy = $(i+1) }
      END { printf "%7.1f MiB/s  fio-huge %6.0f  %3.0f%%  fio %6.0f  %3.0f%%  append p50 %5.1f p99 %5.1f ms  sync wait p50 %5.1f p99 %5.1f ms  %3d fdatasyncs p50 %5.2f ms  %3d rounds beside one  busy %s\n",
            a, f / n, 100 * a / (f / n), g / m, 100 * a / (g / m), ap50 / 1000, ap99 / 1000, sp50 / 1000, sp99 / 1000, fs, fp50 / 1000, beside, busy }'
  done
done

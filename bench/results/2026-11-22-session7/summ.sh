#!/bin/bash
# summarize lat.sh output: per-second p99 list, then totals
awk '/^\[/{for(i=1;i<=NF;i++) if($i=="p99"){printf "%s ", $(i+1); break}; next} {print ""; print}' | sed 's/request_latency_seconds/handler/g; s/request_total_latency_seconds/total/g; s/disk_write_latency_seconds/dw/g' | cut -c1-420

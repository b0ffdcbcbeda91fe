cd /work/main
for pair in 1 2 3; do
  for spin in 100000 500; do
    echo "### pair $pair preempt_us $spin acks=1 rate 450MiB"
    SPINDLE_PREEMPT_US=$spin SPINDLE=/tmp/spindle-pt TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh 450MiB 1 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

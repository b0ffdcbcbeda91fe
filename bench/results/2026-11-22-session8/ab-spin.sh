cd /work/main
for pair in 1 2 3; do
  for spin in 0 200; do
    echo "### pair $pair spin_us $spin acks=1 rate 450MiB"
    SPINDLE_SPIN_US=$spin SPINDLE=/tmp/spindle-spin TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh 450MiB 1 2>&1 \
      | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
  done
done

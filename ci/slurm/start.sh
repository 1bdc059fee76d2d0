#!/usr/bin/env bash
# Start munge and a one-node Slurm (slurmctld + slurmd) as root, from ci/slurm/slurm.conf.in.
#
#   ci/slurm/start.sh [DIR]     DIR defaults to $UPSCALE_SLURM_DIR or /tmp/upscale-slurm
#
# Writes DIR/slurm.conf and DIR/pids (one PID a line, stopped by ci/slurm/stop.sh DIR). Use the
# cluster with `export SLURM_CONF=DIR/slurm.conf`. Exits 1 (starting nothing that stays) when
# Slurm is not installed or does not come up; the slurm tests then skip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${UPSCALE_SLURM_DIR:-/tmp/upscale-slurm}}"
for cmd in munged slurmctld slurmd sinfo; do
    command -v "$cmd" >/dev/null || { echo "slurm: $cmd not found (apt-get install slurm-wlm)" >&2; exit 1; }
done
if [ -s "$dir/pids" ]; then "$here/stop.sh" "$dir" || true; fi
rm -rf "$dir/state" "$dir/spool"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chmod 0755 "$dir"; chmod 0711 "$dir/munge"  # the socket dir: others may traverse
: > "$dir/pids"
# a fresh key for this cluster only
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$dir/munge/munge.key"
munged -F --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" > "$dir/munged.out" 2>&1 &
echo $! >> "$dir/pids"
node_line="$(slurmd -C | head -1 | sed 's/^NodeName=//')"
node="${node_line%% *}"
sed -e "s|@HOST@|$(hostname -s)|" -e "s|@DIR@|$dir|g" -e "s|@NODE@|$node_line|" -e "s|@NODENAME@|$node|" \
    -e "s|@CTLD_PORT@|${UPSCALE_SLURMCTLD_PORT:-6817}|" -e "s|@SLURMD_PORT@|${UPSCALE_SLURMD_PORT:-6818}|" \
    "$here/slurm.conf.in" > "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"
for _ in $(seq 50); do [ -S "$dir/munge/munge.socket.2" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 &
echo $! >> "$dir/pids"
slurmd -D -f "$SLURM_CONF" > "$dir/slurmd.out" 2>&1 &
echo $! >> "$dir/pids"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm: up (SLURM_CONF=$SLURM_CONF, node $node)"
        exit 0
    fi
    sleep 0.5
done
echo "slurm: did not come up in 30 s; logs in $dir" >&2
tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" "$dir/slurmctld.out" "$dir/slurmd.out" >&2 || true
"$here/stop.sh" "$dir" || true
exit 1

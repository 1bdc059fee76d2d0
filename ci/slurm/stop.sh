#!/usr/bin/env bash
# Stop the daemons ci/slurm/start.sh started, by the PIDs it recorded (slurmd and slurmctld first, munged last).
#
#   ci/slurm/stop.sh [DIR]      DIR defaults to $UPSCALE_SLURM_DIR or /tmp/upscale-slurm
set -uo pipefail
dir="${1:-${UPSCALE_SLURM_DIR:-/tmp/upscale-slurm}}"
[ -s "$dir/pids" ] || exit 0
if [ -f "$dir/slurm.conf" ]; then  # workers left by a failed test go with their jobs
    SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
for pid in $(tac "$dir/pids"); do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
done
: > "$dir/pids"
echo "slurm: stopped"

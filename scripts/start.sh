#!/usr/bin/env bash
# Container entry point: thread settings from the CPUs this container actually gets, the IR cache on the
# Space's persistent storage (/data) when there is one, then the app.
set -euo pipefail
cd "$(dirname "$0")/.."
cpus=$(python -c 'import os; print(len(os.sched_getaffinity(0)))')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$cpus}
export SBS_THREADS=${SBS_THREADS:-$cpus}
if [ -d /data ] && [ -w /data ]; then
  export SBS_CACHE_DIR=${SBS_CACHE_DIR:-/data/sd-side-by-side}
fi
echo "start.sh: $cpus CPUs, OMP_NUM_THREADS=$OMP_NUM_THREADS, cache ${SBS_CACHE_DIR:-default}, LD_PRELOAD=${LD_PRELOAD:-none}"
exec python app.py "$@"

#!/usr/bin/env bash
# The app's launcher for the Docker image and `make demo`: the runtime environment (scripts/runtime-env.sh:
# threads from the CPUs actually given, jemalloc, the IR cache on persistent storage), then the app.
#   PYTHON=.venv/bin/python scripts/start.sh [app.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/runtime-env.sh
source scripts/runtime-env.sh
echo "start.sh: $cpus CPUs, OMP_NUM_THREADS=$OMP_NUM_THREADS, cache ${SBS_CACHE_DIR:-default}, HF_HOME=${HF_HOME:-default}, LD_PRELOAD=${LD_PRELOAD:-none}"
exec "${PYTHON:-python}" app.py "$@"

# Sourced by scripts/start.sh (the app in the Docker image and `make demo`): the runtime environment.
# - threads from the CPUs this process may actually use (a container's cgroup/affinity, not the host's count);
# - jemalloc preloaded with the source blog's MALLOC_CONF when SBS_JEMALLOC is 1 (Debian's libjemalloc2, whose
#   path is defined here only) or names the library (the Docker image sets it; whether it helps depends on the
#   machine: results/README.md);
# - Intel OpenMP preloaded only when asked (SBS_IOMP=path to libiomp5.so): opt-in, see README;
# - the Hugging Face cache inside the IR cache (one directory to prepare, or to mount as a Storage Bucket).
cpus=$("${PYTHON:-python}" -c 'import os; print(len(os.sched_getaffinity(0)))')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$cpus}
export SBS_THREADS=${SBS_THREADS:-$cpus}

[ "${SBS_JEMALLOC:-}" = 1 ] && SBS_JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -n "${SBS_JEMALLOC:-}" ] && [ -f "$SBS_JEMALLOC" ]; then
  export LD_PRELOAD="$SBS_JEMALLOC${LD_PRELOAD:+:$LD_PRELOAD}"
  export MALLOC_CONF=${MALLOC_CONF:-oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:60000,muzzy_decay_ms:60000}
  # OpenVINO's oneTBB dlopens libtbbbind with RTLD_DEEPBIND, so hwloc inside it frees jemalloc's memory with
  # glibc's free and OpenVINO aborts in compile_model ("free(): invalid pointer"; oneTBB issue #1645).
  # This makes oneTBB load it without RTLD_DEEPBIND (the workaround its maintainers give).
  export TBB_ENABLE_SANITIZERS=1
fi
if [ -n "${SBS_IOMP:-}" ] && [ -f "$SBS_IOMP" ]; then
  export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$SBS_IOMP"
  export KMP_BLOCKTIME=${KMP_BLOCKTIME:-1}  # idle OpenMP threads sleep at once instead of spinning beside OpenVINO
fi

if [ -n "${SBS_CACHE_DIR:-}" ]; then
  export HF_HOME=${HF_HOME:-$SBS_CACHE_DIR/huggingface}
fi

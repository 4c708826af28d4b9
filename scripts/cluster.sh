#!/usr/bin/env bash
# Cluster mode's commands (README: "A booth of several machines"), one per machine:
#   scripts/cluster.sh head [app.py options]  the Ray head (token authentication, no rows of its own) and the one
#                                             Gradio front, which deploys each CPU kind's rows on the machines
#   scripts/cluster.sh worker HOST:PORT       this machine joins the head's cluster and serves its CPU kind's rows
#   scripts/cluster.sh stop                   stops this machine's Ray processes
# Environment: RAY_PORT (the head's port, default 6379); RAY_NODE_IP (the address this machine is reached at by the
# others; default Ray's guess); RAY_TOKEN_FILE (default .ray-token here: the head makes it at its first start, each
# worker needs a copy); PYTHON (default $VENV/bin/python: VENV is .venv here, /opt/venv in the image); SBS_CPU_KIND
# (a worker plays a lesser kind than its CPU's, core/cpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-${VENV:-.venv}/bin/python}  # the image sets VENV=/opt/venv
RAY=$(dirname "$PYTHON")/ray
RAY_PORT=${RAY_PORT:-6379}
RAY_TOKEN_FILE=${RAY_TOKEN_FILE:-$PWD/.ray-token}
# shellcheck source=scripts/runtime-env.sh
source scripts/runtime-env.sh
# Every Ray process reads these: the token is required of each process that talks to the cluster (workers, the
# front, the replicas), and the replicas import this repository's code (harness.machines.cluster, the rows).
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_TOKEN_FILE" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0  # no usage report from a booth's machines
node_ip=()
[ -n "${RAY_NODE_IP:-}" ] && node_ip=(--node-ip-address "$RAY_NODE_IP")

case "${1:-}" in
  head)
    shift
    if [ ! -s "$RAY_TOKEN_FILE" ]; then
      (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_TOKEN_FILE")
      echo "cluster.sh: made the cluster's token in $RAY_TOKEN_FILE: copy it to each worker (never into git)"
    fi
    # No CPUs of its own for Ray's scheduling: the rows run on the workers, the front's own rows in the front.
    "$RAY" start --head --port "$RAY_PORT" "${node_ip[@]}" --num-cpus 0 --include-dashboard false --disable-usage-stats
    echo "cluster.sh: the head is up; workers join with: make cluster-worker ADDRESS=${RAY_NODE_IP:-<this machine>}:$RAY_PORT"
    # The front is the one process of cluster mode with a page (Gradio sessions live in one process). Whatever ends
    # this script (Ctrl-C, a container's SIGTERM, the front's own exit) ends the front and this machine's Ray too.
    PYTHON=$PYTHON bash scripts/start.sh --cluster "${RAY_NODE_IP:-127.0.0.1}:$RAY_PORT" "$@" &
    front=$!
    trap 'kill -TERM "$front" 2>/dev/null; wait "$front" 2>/dev/null; "$RAY" stop >/dev/null 2>&1 || true' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    wait "$front"
    ;;
  worker)
    address=${2:-}
    if [ -z "$address" ]; then
      echo "cluster.sh worker: give the head's address: make cluster-worker ADDRESS=host:port" >&2
      exit 2
    fi
    if [ ! -s "$RAY_TOKEN_FILE" ]; then
      echo "cluster.sh worker: no token at $RAY_TOKEN_FILE: copy the head's .ray-token here (or set RAY_TOKEN_FILE)" >&2
      exit 2
    fi
    # The kind this machine is (or plays, SBS_CPU_KIND): the one custom resource it advertises.
    kind=$("$PYTHON" -c 'from core.cpu import played_cpu; print(played_cpu().kind() or "")')
    if [ -z "$kind" ]; then
      echo "cluster.sh worker: this CPU is below AVX2, no kind of core/cpu.py: it cannot serve rows" >&2
      exit 1
    fi
    echo "cluster.sh: joining $address as a machine of kind $kind ($cpus CPUs)"
    log=$(mktemp)
    if ! "$RAY" start --address "$address" "${node_ip[@]}" --num-cpus "$cpus" --resources "{\"sbs-kind-$kind\": 1}" \
        --disable-usage-stats > "$log" 2>&1; then
      tail -n 3 "$log" >&2
      if grep -qiE "auth|token|unauthenticated" "$log"; then
        echo "cluster.sh worker: the head refused this machine's token: copy the head's .ray-token to $RAY_TOKEN_FILE" >&2
      elif grep -qiE "version" "$log"; then
        echo "cluster.sh worker: this machine's Ray or Python differs from the head's: run make setup on the same commit on both" >&2
      else
        echo "cluster.sh worker: could not join $address (above); is the head up, its port reachable from here?" >&2
      fi
      rm -f "$log"
      exit 1
    fi
    cat "$log"
    rm -f "$log"
    echo "cluster.sh: joined; the front gives this machine a replica of the $kind rows within seconds. Stop: make cluster-stop"
    ;;
  stop)
    "$RAY" stop
    ;;
  *)
    echo "usage: scripts/cluster.sh head [app.py options] | worker HOST:PORT | stop" >&2
    exit 2
    ;;
esac

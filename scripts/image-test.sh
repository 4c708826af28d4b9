#!/usr/bin/env bash
# `make image-test`: build the Space image on a locally made Debian base (torch from PyPI, the `tiny` stand-in
# prepared at build time), then start it twice as the Space does (user 1000) and check each start: the page
# answers, /health lists every row this CPU can run as ready and warm with every build a cache hit, and one
# /generate succeeds. Prints the image size, the time to every row warm and the app's RSS.
#
# Here `podman run` cannot start containers (crun: setrlimit RLIMIT_NPROC), so a start is the image's
# filesystem (`podman mount` of a new container) under `chroot --userspec=1000:1000` with the image's
# environment; the Space itself runs the same image with Docker.
#   scripts/image-test.sh [--base-only | --start-only]
#     --start-only  no build: start the image already built (e.g. on a prepared cache, below)
#   SBS_IMAGE_TEST_CACHE=dir  start on this host cache directory, bind-mounted at /bucket with SBS_CACHE_DIR set to
#                             /bucket/sbs-cache, as a Storage Bucket mounted where its owner chose would be (not at the
#                             image's /opt/sbs-cache, which would hide where HF_HOME goes); it is chowned to user 1000,
#                             the Space's user. Without it, `make image-test` makes an empty one: the first start
#                             builds into it, the restart must find everything there and download nothing
#   SBS_IMAGE_TEST_MODEL=id SBS_IMAGE_TEST_SIZE=512  the model and size the starts serve (default: tiny at 128)
#   Other SBS_* settings named in SBS_IMAGE_TEST_ENV (e.g. "SBS_CALIBRATION_PROMPTS=2") are passed to the app.
#   SBS_IMAGE_TEST_RESULTS=1  also write each start's figures to results/image-start-<model>-<size>px-<cpu kind>-<start>.json
#                             (with date, command, commit and CPU; `python -m benchmarking.report results/` tabulates them)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=localhost/sbs-base-bookworm
BUCKET=/bucket  # where the starts mount SBS_IMAGE_TEST_CACHE inside the image
IMAGE=localhost/sbs-space-test
PORT=${SBS_IMAGE_TEST_PORT:-7899}
HOST_CACHE=${SBS_IMAGE_TEST_CACHE:-}
MODEL=${SBS_IMAGE_TEST_MODEL:-}
SIZE=${SBS_IMAGE_TEST_SIZE:-128}
read -r -a EXTRA_ENV <<<"${SBS_IMAGE_TEST_ENV:-}"
PYTHON=${PYTHON:-.venv/bin/python}

[ "$(id -u)" = 0 ] || { echo "image-test: run as root (podman build --isolation chroot, chroot)" >&2; exit 1; }
# podman and debootstrap from Debian's packages, installed here so a fresh machine needs no hand steps.
missing=()
for tool in podman debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "image-test: please install ${missing[*]}" >&2; exit 1; }
  echo "image-test: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cache_manifest() {
  # every file of a cache directory but the kept examples: path, size, modification time
  [ -d "$1" ] || return 0
  find "$1" -path "$1/showcase" -prune -o -type f -printf '%P %s %T@\n' | sort
}

make_base() {
  # The base the Dockerfile expects (python3.11 as python), from Debian's mirror: Docker Hub is not reachable here.
  podman image exists "$BASE" && return
  local dir
  dir=$(mktemp -d /var/tmp/sbs-base.XXXXXX)
  local mirror
  # the Debian mirror apt uses here (deb822 "URIs:" or one-line "deb URL bookworm" sources)
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -oE '^(URIs: |deb )https?://[^ ]+/debian( |$)' | grep -oE 'https?://[^ ]+' | head -1 || true)
  echo "image-test: debootstrap bookworm from ${mirror:-the default mirror} into $dir"
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
    bookworm "$dir" ${mirror:+"$mirror"} >/dev/null
  ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python3"
  rm -rf "$dir/var/cache/apt/archives"/*.deb
  # This machine's extra certificate authorities (its egress to the package registries), as the host trusts them.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    chroot "$dir" update-ca-certificates >/dev/null
  fi
  tar -C "$dir" -c . | podman import --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - "$BASE" >/dev/null
  rm -rf "$dir"
}

make_base
[ "${1:-}" = --base-only ] && exit 0

if [ "${1:-}" != --start-only ]; then
  echo "image-test: building $IMAGE"
  podman build --isolation chroot --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_SOURCE=pypi \
    --build-arg PREPARE_MODEL=tiny --build-arg PREPARE_SIZES=128 -t "$IMAGE" .
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image-test: image size $((size / 1000000)) MB"

start_once() {  # one start of the image as the Space would do it; $1 names the run in the output
  local ctr root pid log="artifacts/image-test-$1.log"
  mkdir -p artifacts
  ctr=$(podman create "$IMAGE")
  root=$(podman mount "$ctr")
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/tmp"
  if [ -n "$HOST_CACHE" ]; then  # a bucket at a path of its own; the app runs as user 1000
    chown -R 1000 "$HOST_CACHE"
    mkdir -p "$root$BUCKET"
    mount --bind "$HOST_CACHE" "$root$BUCKET"
  fi
  # what a container engine writes into a container at start: name resolution (Gradio calls itself on localhost)
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  cleanup() {  # idempotent: runs on return, on a failed check (set -e) and on Ctrl-C
    [ -n "${ctr:-}" ] || return 0
    if [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
    umount -l "$root$BUCKET" 2>/dev/null || true
    umount -l "$root/tmp" "$root/dev" "$root/sys" "$root/proc" 2>/dev/null || true
    podman umount "$ctr" >/dev/null || true
    podman rm "$ctr" >/dev/null || true
    ctr=
  }
  trap cleanup RETURN EXIT
  trap 'cleanup; exit 130' INT TERM
  mapfile -t env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep .)
  local workdir
  workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")
  local cache="$root/opt/sbs-cache"
  [ -n "$HOST_CACHE" ] && cache="$HOST_CACHE/sbs-cache"
  local cache_before
  cache_before=$(cache_manifest "$cache")
  local started
  started=$(date +%s.%N)
  # shellcheck disable=SC2016
  env -i "${env[@]}" HOME=/home/user SBS_PORT="$PORT" ${MODEL:+SBS_MODEL="$MODEL"} SBS_SIZES="$SIZE" \
    ${HOST_CACHE:+SBS_CACHE_DIR="$BUCKET/sbs-cache"} \
    "${EXTRA_ENV[@]}" \
    chroot --userspec=1000:1000 "$root" bash -c 'cd "$0" && exec bash scripts/start.sh' "$workdir" >"$log" 2>&1 &
  pid=$!
  local may_build=0
  [ -n "$HOST_CACHE" ] && [ "$1" != restart ] && [ "$1" != bucket-restart ] && may_build=1
  "$PYTHON" - "$PORT" "$started" "$pid" "$SIZE" "$may_build" "$1" "${SBS_IMAGE_TEST_RESULTS:-}" "$((size / 1000000))" \
    "${MODEL:-tiny}" "${HOST_CACHE:+bucket}" <<'EOF' || { echo "image-test: start $1 failed; its log:" >&2; tail -30 "$log" >&2; return 1; }
import sys, time, urllib.request
from gradio_client import Client
sys.path.insert(0, ".")
from backends import backend_class
from core.cpu import this_cpu

port, started, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
url = f"http://127.0.0.1:{port}/"
deadline = time.time() + 900


def alive():
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


while True:
    try:
        assert urllib.request.urlopen(url, timeout=5).status == 200
        break
    except Exception:
        assert alive(), "the app exited before its page answered (see its log)"
        assert time.time() < deadline, "the page never answered"
        time.sleep(0.5)
page_up = time.time() - started
client = Client(url, verbose=False)
shown = list(client.predict(api_name="/health")["rows"])  # the rows this start serves (SBS_BACKENDS may choose)
expected = [b for b in shown if backend_class(b).support(this_cpu()).runs]
while True:
    health = client.predict(api_name="/health")
    if health["warm"] == expected:
        break
    assert alive(), "the app exited (see its log)"
    assert time.time() < deadline, f"rows not warm after 15 min: {health}"
    time.sleep(1)
all_warm = time.time() - started
assert health["ready"] == expected, health
builds = {b: c for b, c in health["cache"].items() if c not in ("hit", "n/a", None)}
assert not builds or sys.argv[5] == "1", f"a start built something: {builds}"
size = f"{sys.argv[4]}x{sys.argv[4]}"
out = client.predict("cartoon bird", "", 42, False, 4, 7.5, size, "dpm++", api_name="/generate")
ok = [r["backend"] for r in out[4]["rows"] if r["status"] == "ok"]
assert ok == expected, out[4]["rows"]
print(f"image-test: page up after {page_up:.1f} s, every row ready and warm after {all_warm:.1f} s, "
      f"cache {health['cache']}, /generate ok on {', '.join(ok)}")
# The page opens on the first built-in example's images, served from the image's cache directory (Gradio refuses
# files outside its temporary and working directories unless they are allowed).
from playwright.sync_api import sync_playwright

while client.predict(api_name="/health")["examples_ready"] < 1:
    assert time.time() < deadline, "the first example was never computed"
    time.sleep(1)
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('.row-image img').length >= {len(expected)}", timeout=60_000)
    # The booth screen races a kept comparison to its end, every picture loaded from where the image keeps them.
    kiosk = browser.new_page(viewport={"width": 1920, "height": 1080})
    kiosk.goto(url + "kiosk")
    kiosk.wait_for_selector("#headline.shown", timeout=120_000)
    raced = kiosk.eval_on_selector_all("#rows img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
    assert len(raced) == len(expected) and all(raced), raced
    browser.close()
print(f"image-test: the page opens on the first example's {len(expected)} images; the booth screen races them")
if sys.argv[7]:  # SBS_IMAGE_TEST_RESULTS: this start's figures as a results file
    from benchmarking.report import provenance
    from core.files import write_json
    from core.naming import model_slug
    from harness.records.results import RESULTS

    with open(f"/proc/{pid}/status") as status:
        rss_mb = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))
    start, model = sys.argv[6], sys.argv[9]
    report = {
        **provenance([], program=f"SBS_IMAGE_TEST_RESULTS=1 scripts/image-test.sh (its start '{start}')"),
        "mode": "image-start", "start": start, "model": model, "size": int(sys.argv[4]),
        "image_mb": int(sys.argv[8]), "cache_mount": "a bucket at /bucket" if sys.argv[10] else "the image's /opt/sbs-cache",
        "page_up_s": round(page_up, 1), "all_warm_s": round(all_warm, 1), "rows": ok, "cache": health["cache"],
        "rss_mb_after_request": rss_mb,
    }  # fmt: skip
    path = RESULTS / f"image-start-{model_slug(model)}-{sys.argv[4]}px-{report['cpu_kind']}-{start}.json"
    write_json(path, report)
    print(f"image-test: wrote {path}")
EOF
  # env, chroot, bash and start.sh each exec the next: $pid is the app's Python process now
  echo "image-test: app RSS with every row loaded: $(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status") MB"
  grep -E "^start.sh:" "$log" | sed "s/^/image-test: $1: /"
  if [ -n "$HOST_CACHE" ] && ! grep -q "HF_HOME=$BUCKET/sbs-cache/huggingface" "$log"; then
    echo "image-test: start $1 keeps the Hugging Face cache outside the bucket (see $log)" >&2
    return 1
  fi
  if [ "$may_build" = 0 ]; then  # a first start on an empty bucket builds; nothing else may
    if grep -qE "exporting to OpenVINO IR|building int8|cache: built|downloading" "$log"; then
      echo "image-test: start $1 built or downloaded something (see $log)" >&2
      return 1
    fi
    # What the log may not say: any file added to or changed in the cache (models, IR, compiled code) other than
    # the kept examples is something this start built or downloaded.
    if ! diff <(echo "$cache_before") <(cache_manifest "$cache") >"$log.cache-diff"; then
      echo "image-test: start $1 wrote into its cache (see $log.cache-diff)" >&2
      return 1
    fi
  fi
  grep -oE "\[[a-z0-9-]+\] loaded in [0-9.]+ s, cache: .*" "$log" | sed "s/^/image-test: $1: /"
}

if [ -n "$HOST_CACHE" ]; then  # a bucket given: start on it twice
  start_once first
  start_once restart
else  # the prepared image twice, then an empty bucket twice: the first start builds into it, the restart finds it
  start_once first
  start_once restart
  HOST_CACHE=$(mktemp -d /var/tmp/sbs-bucket.XXXXXX)
  start_once bucket-first
  start_once bucket-restart
  rm -rf "$HOST_CACHE"
fi
echo "image-test: passed"

# The few commands users need. Every target installs what it needs first (scripts/install.sh, idempotent).
PY := .venv/bin/python
MODEL ?= stable-diffusion-v1-5/stable-diffusion-v1-5
HOST ?= 127.0.0.1
TRUSTED_PROXIES ?=

ADDRESS ?=

.PHONY: setup setup-dev demo booth cluster-head cluster-worker cluster-stop test lint benchmark benchmark-int8 benchmark-int8-recipes benchmark-cluster quality image image-test clean-cache

setup:
	bash scripts/install.sh

setup-dev:
	bash scripts/install.sh --dev

## demo: the app on $(MODEL) (falls back to the `tiny` stand-in offline), http://localhost:7860 on this machine
## only: for the operator (raw errors, every step count)
demo: setup
	PYTHON=$(PY) bash scripts/start.sh --model $(MODEL) --host $(HOST)

## booth: the app for strangers on the network (a booth's Wi-Fi): public mode (the real model or the reason it is
## missing, never the noise stand-in; steps and sizes capped; short errors with ids), on every interface, port 7860;
## TRUSTED_PROXIES=127.0.0.1 when a reverse proxy on this machine stands in front
booth: setup
	PYTHON=$(PY) bash scripts/start.sh --model $(MODEL) --host 0.0.0.0 --public true \
		--trusted-proxies "$(TRUSTED_PROXIES)"

## cluster-head: several machines (README "A booth of several machines"): a Ray head with token authentication and
## the one front (http://localhost:7860), which puts each CPU kind's rows on the workers of that kind
cluster-head: setup
	PYTHON=$(PY) bash scripts/cluster.sh head --model $(MODEL) --host $(HOST)

## cluster-worker ADDRESS=host:port: this machine joins the head's cluster and serves the rows of its CPU kind
cluster-worker: setup
	PYTHON=$(PY) bash scripts/cluster.sh worker "$(ADDRESS)"

cluster-stop:
	PYTHON=$(PY) bash scripts/cluster.sh stop

## test: lint, then every test on the `tiny` stand-in (browser test included), in random order (pytest-randomly)
test: setup-dev lint
	$(PY) -m pytest

lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/hadolint Dockerfile

## benchmark: the README table on the SD-1.5-sized stand-in, 3 paired rounds (slow: run it in the background)
benchmark: setup
	$(PY) benchmark.py --model sd15-standin --size 512 --steps 20 --passes 3 --calibration-prompts 2 \
		--save-images artifacts/benchmark-images

## benchmark-int8: int8-tome built several ways (issue 14's changes in order; ToMe ratio/placement), each in 3
## rounds beside the baseline (long: every variant is built, i.e. calibrated, then timed three times)
benchmark-int8: setup
	$(PY) benchmark.py --model sd15-standin --size 512 --steps 20 --passes 3 --calibration-prompts 2 \
		--variants ablation,sweep

## benchmark-int8-recipes: what the quality-first recipe costs: the int8 row built full and hybrid, both timed in the
## same 3 paired rounds beside the baseline (SD-1.5 size; long: both recipes are built, i.e. calibrated, first)
benchmark-int8-recipes: setup
	$(PY) benchmark.py --model sd15-standin --size 512 --steps 20 --passes 3 --calibration-prompts 2 \
		--variants recipes --pairing together

## benchmark-cluster: cluster mode's visitors per hour with 1 and 2 machines (Ray nodes on this machine, the `tiny`
## stand-in): proves routing and overlap, not speed (the nodes share this machine's cores)
benchmark-cluster: setup
	$(PY) -m benchmarking.cluster_visitors --visitors 6 --passes 3

## quality: the quality report (every row and both int8 recipes on the shipped prompt set, judged against the
## baseline by PSNR, SSIM and CLIP) on MODEL (default the real SD-1.5; needs the Hub or a local copy); QUALITY_PROMPTS=N
## takes the first N prompts. Writes results/quality-*.json and its grid; the int8 row then runs the recipe it chose.
QUALITY_PROMPTS ?= 0
quality: setup
	$(PY) benchmark.py --quality --strict true --quality-prompts $(QUALITY_PROMPTS) --model $(MODEL)

## image: the Space image with docker or podman (the model and its IR prepared inside: slow, needs the Hub)
image:
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then docker build -t sd-side-by-side .; \
	elif command -v podman >/dev/null; then podman build --isolation chroot -t sd-side-by-side .; \
	else echo "make image: needs a running Docker engine, or podman"; exit 1; fi

## image-test: build the image on a local Debian base with the `tiny` stand-in and start it twice (slow lane)
image-test: setup-dev
	bash scripts/image-test.sh

clean-cache:
	rm -rf $${SBS_CACHE_DIR:-$$HOME/.cache/sd-side-by-side}

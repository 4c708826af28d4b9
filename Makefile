# The few commands users need. Every target installs what it needs first (scripts/install.sh, idempotent).
PY := .venv/bin/python
MODEL ?= stable-diffusion-v1-5/stable-diffusion-v1-5

.PHONY: setup setup-dev demo test lint benchmark clean-cache

setup:
	bash scripts/install.sh

setup-dev:
	bash scripts/install.sh --dev

## demo: the app on $(MODEL) (falls back to the `tiny` stand-in offline), http://localhost:7860
demo: setup
	PYTHON=$(PY) bash scripts/start.sh --model $(MODEL)

## test: lint, then every test on the `tiny` stand-in (browser test included)
test: setup-dev lint
	$(PY) -m pytest

lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/hadolint Dockerfile

## benchmark: the README table on the SD-1.5-sized stand-in (slow: run it in the background)
benchmark: setup
	$(PY) benchmark.py --model sd15-standin --size 512 --steps 20 --passes 1 --calibration-prompts 2 \
		--json artifacts/benchmark-sd15.json --save-images artifacts/benchmark-images

clean-cache:
	rm -rf $${SBS_CACHE_DIR:-$$HOME/.cache/sd-side-by-side}

# Hugging Face Space (Docker SDK) image: the pinned requirements, CPU-only torch, jemalloc (preloaded), and the
# model with every row's IR prepared when the image is built, so that a start only compiles.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# cpu: torch from the PyTorch CPU wheel index (no CUDA libraries); pypi: torch from PyPI (make image-test here)
ARG TORCH_SOURCE=cpu
# The model whose IR is built into the image, and its sizes; PREPARE_MODEL="" leaves it to the first start.
ARG PREPARE_MODEL=stable-diffusion-v1-5/stable-diffusion-v1-5
ARG PREPARE_SIZES=512
# The CPU kinds the prepared IR must serve besides the builder's own (the Space's CPU is undocumented and the builder's
# is nobody's choice): int8 IR differs on either side of VNNI (NNCF's overflow fix), so both are built by default.
ARG PREPARE_CPU_KINDS=avx2,avx512-vnni
# The image measures itself: the quality report on the first QUALITY_PROMPTS prompts of assets/quality_prompts.json,
# made while it is built (real weights, the builder's CPU; scripts/image-quality.sh). 4 prompts cost about as long as
# 4 comparisons of every row plus the other int8 recipe: about 25 min on 2 cores of the AMX Xeon at 512x512, well
# inside a Space build on 8 vCPU. The page's "Quality report" tab shows it, and where the Space's CPU is the
# builder's kind the int8 row runs the recipe it chose (elsewhere the quality-first hybrid). 0 makes none; a
# stand-in model or a model or judge out of reach makes none either, and the build goes on. QUALITY_JUDGE: the CLIP
# judge (hub id, or a local copy).
ARG QUALITY_PROMPTS=4
ARG QUALITY_JUDGE=

ENV VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SBS_CACHE_DIR=/opt/sbs-cache

WORKDIR /app
# The same install script as `make setup`/CI.
COPY requirements.txt requirements-dev.txt ./
COPY scripts/install.sh scripts/install.sh
RUN if [ "$TORCH_SOURCE" = cpu ]; then bash scripts/install.sh --cpu-torch; else bash scripts/install.sh --pypi-torch; fi \
    && rm -rf /root/.cache/pip /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 user && mkdir -p /opt/sbs-cache && chown -R 1000 /home/user /opt/sbs-cache
COPY --chown=1000 . .
USER 1000

# scripts/start.sh preloads Debian's jemalloc (SBS_JEMALLOC=1; SBS_JEMALLOC= turns it off) with the blog's MALLOC_CONF and
# sets the threads from the CPUs the container gets; SBS_IOMP=$SBS_IOMP_PATH also preloads Intel OpenMP (opt-in).
# A public instance: the strict model (never the random-weight stand-in), the operator's caps, short errors, and
# every interface (the Space's proxy reaches it from outside the container).
ENV SBS_JEMALLOC=1 \
    SBS_IOMP_PATH=/opt/venv/lib/libiomp5.so \
    SBS_PUBLIC=true \
    SBS_HOST=0.0.0.0 \
    SBS_MODEL=${PREPARE_MODEL:-stable-diffusion-v1-5/stable-diffusion-v1-5} \
    SBS_SIZES=${PREPARE_SIZES}

# Download the model and build the IR now (Spaces build images with network access); a start then finds them.
# Under the start's environment (scripts/runtime-env.sh), so the Hugging Face cache goes where a start looks for
# it: $SBS_CACHE_DIR/huggingface, which follows SBS_CACHE_DIR into a bucket unless HF_HOME is set.
RUN if [ -n "$PREPARE_MODEL" ]; then \
      bash -c 'source scripts/runtime-env.sh && exec python -m harness.prepare --strict true --for-cpu-kinds "$0"' \
        "$PREPARE_CPU_KINDS"; fi \
    && if [ -n "$PREPARE_MODEL" ]; then bash scripts/image-quality.sh "$QUALITY_PROMPTS"; fi

EXPOSE 7860
CMD ["bash", "scripts/start.sh"]

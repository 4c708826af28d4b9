# Hugging Face Space (Docker SDK) image: the pinned requirements, CPU-only torch, jemalloc (preloaded), and the
# model with every row's IR prepared when the image is built, so that a start only compiles.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# cpu: torch from the PyTorch CPU wheel index (no CUDA libraries); pypi: torch from PyPI (make image-test here)
ARG TORCH_SOURCE=cpu
# The model whose IR is built into the image, and its sizes; PREPARE_MODEL="" leaves it to the first start.
ARG PREPARE_MODEL=stable-diffusion-v1-5/stable-diffusion-v1-5
ARG PREPARE_SIZES=512

ENV VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SBS_CACHE_DIR=/opt/sbs-cache \
    HF_HOME=/opt/sbs-cache/huggingface

WORKDIR /app
# The same install script as `make setup`/CI.
COPY requirements.txt requirements-dev.txt ./
COPY scripts/install.sh scripts/install.sh
RUN if [ "$TORCH_SOURCE" = cpu ]; then bash scripts/install.sh --cpu-torch; else bash scripts/install.sh; fi \
    && rm -rf /root/.cache/pip /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 user && mkdir -p /opt/sbs-cache && chown -R 1000 /home/user /opt/sbs-cache
COPY --chown=1000 . .
USER 1000

# scripts/start.sh preloads jemalloc (SBS_JEMALLOC; SBS_JEMALLOC= turns it off) with the blog's MALLOC_CONF and
# sets the threads from the CPUs the container gets; SBS_IOMP=$SBS_IOMP_PATH also preloads Intel OpenMP (opt-in).
ENV SBS_JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
    SBS_IOMP_PATH=/opt/venv/lib/libiomp5.so \
    SBS_MODEL=${PREPARE_MODEL:-stable-diffusion-v1-5/stable-diffusion-v1-5} \
    SBS_SIZES=${PREPARE_SIZES}

# Download the model and build the IR now (Spaces build images with network access); a start then finds them.
RUN if [ -n "$PREPARE_MODEL" ]; then python -m harness.prepare --strict true; fi

EXPOSE 7860
CMD ["bash", "scripts/start.sh"]

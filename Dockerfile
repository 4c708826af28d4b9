# Hugging Face Space (Docker SDK) image: CPU-only torch, the pinned requirements, jemalloc and Intel OpenMP installed.
FROM python:3.11-slim-bookworm

ENV VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app
# The same install script as `make setup`/CI; --cpu-torch takes torch from the PyTorch CPU wheel index.
COPY requirements.txt requirements-dev.txt ./
COPY scripts/install.sh scripts/install.sh
RUN bash scripts/install.sh --cpu-torch && rm -rf /root/.cache/pip /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 user && mkdir -p /home/user/.cache && chown -R user /home/user
COPY --chown=1000 . .
USER 1000

# The blog's allocator tuning, ready but off: with jemalloc preloaded, OpenVINO aborts while compiling
# ("free(): invalid pointer", seen with openvino 2026.4.1), and Intel OpenMP's spinning threads slowed the
# OpenVINO rows in the same process. benchmark.py --system-variants measures them on the PyTorch rows.
ENV SBS_JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
    SBS_IOMP=/opt/venv/lib/libiomp5.so \
    MALLOC_CONF=oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:60000,muzzy_decay_ms:60000 \
    SBS_MODEL=stable-diffusion-v1-5/stable-diffusion-v1-5

EXPOSE 7860
CMD ["bash", "scripts/start.sh"]

# Hugging Face Space (Docker SDK) image: CPU-only torch, the pinned requirements, jemalloc (preloaded) and Intel OpenMP.
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

# scripts/start.sh preloads jemalloc (SBS_JEMALLOC, SBS_JEMALLOC= turns it off) with the blog's MALLOC_CONF and
# sets the threads from the CPUs the container gets; SBS_IOMP=$SBS_IOMP_PATH also preloads Intel OpenMP (opt-in).
ENV SBS_JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
    SBS_IOMP_PATH=/opt/venv/lib/libiomp5.so \
    SBS_MODEL=stable-diffusion-v1-5/stable-diffusion-v1-5

EXPOSE 7860
CMD ["bash", "scripts/start.sh"]

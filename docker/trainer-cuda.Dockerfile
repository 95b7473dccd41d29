# The GRPO trainer on NVIDIA GPUs (NCCL under torchrun, one process per GPU). Only the `trainer` extra; torch is
# the CUDA 12.6 wheel of the pinned version. Serves /status, /health and /metrics on 9400 while it trains; runs go to /runs (a volume).
# Build from the repository root:  docker build -f docker/trainer-cuda.Dockerfile -t alphagrpo-trainer-cuda .
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS build
# Ubuntu's python3.12 follows its security updates, so its version is not pinned (the base image is).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python3.12 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 \
 && /opt/venv/bin/pip install --no-cache-dir ".[trainer]"

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
# Ubuntu's python3.12 follows its security updates, so its version is not pinned (the base image is).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 alphagrpo && mkdir /runs && chown alphagrpo /runs
COPY --from=build /opt/venv /opt/venv
COPY models /app/models
COPY configs /app/configs
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLCONFIGDIR=/tmp/matplotlib \
    TRAINER_MONITOR_HOST=0.0.0.0 TRAINER_MONITOR_PORT=9400 TRAINER_RUN_DIR=/runs/shapes-t2i
WORKDIR /app
USER 10001
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9400/health', timeout=2).status == 200 else 1)"]
# torchrun starts one rank per visible GPU; rank 0 serves the monitor
CMD ["sh", "-c", "exec torchrun --standalone --nproc_per_node=${TRAINER_GPUS:-1} -m alphagrpo.cli train --resume"]

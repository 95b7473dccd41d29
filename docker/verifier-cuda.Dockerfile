# The verifier on an NVIDIA GPU (the `hf` backend with a local VLM in bf16). Only the `verifier` extra; torch
# is the CUDA 12.6 wheel of the same version the project pins.
# Build from the repository root:  docker build -f docker/verifier-cuda.Dockerfile -t alphagrpo-verifier-cuda .
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
 && /opt/venv/bin/pip install --no-cache-dir ".[verifier]"

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
# Ubuntu's python3.12 follows its security updates, so its version is not pinned (the base image is).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 alphagrpo
COPY --from=build /opt/venv /opt/venv
COPY models /app/models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VERIFIER_HOST=0.0.0.0 VERIFIER_PORT=8002 \
    VERIFIER_HF_DEVICE=cuda VERIFIER_HF_DTYPE=bfloat16
WORKDIR /app
USER 10001
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=2).status == 200 else 1)"]
CMD ["alphagrpo", "serve", "verifier"]

# The GRPO trainer on CPU (gloo when several processes run under torchrun). Only the `trainer` extra; torch is
# the CPU wheel. Serves /status, /health and /metrics on 9400 while it trains; runs go to /runs (a volume).
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t alphagrpo-trainer .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && /opt/venv/bin/pip install --no-cache-dir ".[trainer]"

FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 alphagrpo && mkdir /runs && chown alphagrpo /runs
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
CMD ["alphagrpo", "train", "--resume"]

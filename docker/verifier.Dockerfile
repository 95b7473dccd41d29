# The verifier on CPU (the `hf` backend with the shipped ShapesWorld model, or `openai` against vLLM).
# Only the `verifier` extra; torch is the CPU wheel.
# Build from the repository root:  docker build -f docker/verifier.Dockerfile -t alphagrpo-verifier .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && /opt/venv/bin/pip install --no-cache-dir ".[verifier]"

FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 alphagrpo
COPY --from=build /opt/venv /opt/venv
COPY models /app/models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VERIFIER_HOST=0.0.0.0 VERIFIER_PORT=8002 \
    VERIFIER_HF_MODEL_PATH=/app/models/shapes-verifier ALPHAGRPO_CACHE=/home/alphagrpo/.cache/alphagrpo
WORKDIR /app
USER 10001
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=2).status == 200 else 1)"]
CMD ["alphagrpo", "serve", "verifier"]

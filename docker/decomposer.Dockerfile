# The decomposer (CPU; its LLM, if any, runs in a vLLM/SGLang container). Only the `decomposer` extra.
# Build from the repository root:  docker build -f docker/decomposer.Dockerfile -t alphagrpo-decomposer .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ".[decomposer]"

FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 alphagrpo
COPY --from=build /opt/venv /opt/venv
COPY configs /app/configs
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DECOMPOSER_HOST=0.0.0.0 DECOMPOSER_PORT=8001
WORKDIR /app
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=2).status == 200 else 1)"]
CMD ["alphagrpo", "serve", "decomposer"]

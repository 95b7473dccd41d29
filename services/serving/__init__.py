"""Shared plumbing of the alphagrpo services: ``serving.http`` (FastAPI error mapping, auth, limits,
metrics) and ``serving.launch`` (start a service as a subprocess on a free port and wait for /health)."""

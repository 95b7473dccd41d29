"""``alphagrpo demo``: the embedded-default demo, end to end.

Starts the decomposer (rules backend) and the verifier (embedded default model) as local processes on free
ports; asks ``/v1/reward`` for the DVReward of an example image with the ``dvreward`` client, printing each
question with its P(yes); then, when the tiny UMM base is present (``models/shapes-umm``), trains it with
GRPO against those services for a few minutes (``configs/shapes-t2i.yaml`` with a time limit and a smaller
evaluation) and leaves ``log.jsonl``, ``curves.png``, image grids and ``report.md`` in the run folder.
"""

from __future__ import annotations

import base64
from pathlib import Path

import typer

from dvreward.client import VerifierClient
from dvreward.schemas import RewardItem
from serving.launch import start_decomposer, start_verifier

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_IMAGE = ROOT / "docs" / "example.png"
DEFAULT_UMM = ROOT / "models" / "shapes-umm"
CONFIG = ROOT / "configs" / "shapes-t2i.yaml"
# the world's knowledge base as the rules decomposer's lexicon: implicit prompts get explicit questions
SHAPES_LEXICON_ENV = {"DECOMPOSER_RULES_LEXICON": str(ROOT / "configs" / "shapesworld-lexicon.json")}


def run_demo(prompt: str, image: Path | None = None, minutes: float = 3.0, model: Path = DEFAULT_UMM,
             run_dir: Path = Path("runs/demo"), eval_prompts: int = 64) -> None:  # fmt: skip
    image = image or EXAMPLE_IMAGE
    b64 = base64.b64encode(image.read_bytes()).decode()
    decomposer, durl = start_decomposer(env=SHAPES_LEXICON_ENV)
    typer.echo(f"decomposer (rules backend, ShapesWorld lexicon) on {durl}; starting the verifier ...")
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl})
        with verifier, VerifierClient(vurl) as client:
            verifier_model = client.health().model
            res = client.reward([RewardItem(prompt=prompt, image=b64)]).results[0]
            if res.error is not None:
                raise typer.Exit(f"reward failed: {res.error.message}")
            typer.echo(f'\nprompt: "{prompt}"\nimage:  {image}\nverifier model: {verifier_model}\n')
            for q, s in zip(res.questions, res.scores):
                p = f"{s.p_yes:.3f}" if s.p_yes is not None else f"NaN ({s.reason})"
                typer.echo(f"  {q.id:4s} {q.kind:8s} {q.tag:11s} P(yes)={p}  {q.text}")
            fmt = lambda x: "NaN" if x is None else f"{x:.4f}"  # noqa: E731
            typer.echo(f"\nsemantic {fmt(res.semantic)}  quality {fmt(res.quality)}  "
                       f"DVReward = sqrt(semantic x quality) = {fmt(res.reward)}")  # fmt: skip
            if "random" in verifier_model:
                typer.echo("\n(the embedded verifier has random weights until the ShapesWorld model ships: the "
                           "arithmetic is real, the scores carry no information)")  # fmt: skip
            if minutes <= 0:
                return
            if not (Path(model) / "umm_config.json").exists():
                typer.echo(f"\nno UMM base at {model}: GRPO part skipped (pretrain one: `alphagrpo shapes train-umm`)")
                return
            typer.echo(f"\nGRPO on {model} for {minutes:g} minutes, rewarded by DVReward from {vurl} ...")
            summary = train_demo(vurl, Path(model), minutes, Path(run_dir), eval_prompts)
            typer.echo(f"\n{summary['report']}\nrun folder: {run_dir} (report.md, curves.png, eval-*.png, log.jsonl)")


def train_demo(verifier_url: str, model: Path, minutes: float, run_dir: Path, eval_prompts: int = 64,
               progress: bool = True) -> dict:  # fmt: skip
    """A time-limited GRPO run of the shapes-t2i config against running services; writes report.md."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from recipes.grpo import ShapesTask, build_fetcher
    from trainer.config import TrainConfig
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.train import train

    cfg = TrainConfig.from_yaml(CONFIG)
    cfg = replace(cfg, model_path=str(model), reward=replace(cfg.reward, verifier_url=verifier_url),
                  eval=replace(cfg.eval, prompts=eval_prompts),
                  run=replace(cfg.run, steps=10**6, max_minutes=minutes, run_dir=str(run_dir), eval_every=10**6,
                              checkpoint_every=10**6, monitor_port=None))  # fmt: skip
    policy = TinyUMM.load(model).train()
    fetcher = build_fetcher(cfg)
    try:
        task = ShapesTask(AutoTokenizer.from_pretrained(model), fetcher, run_dir, **cfg.task_kwargs())
        records = train(cfg, policy, task, fetcher, progress=progress)
    finally:
        fetcher.close()
    evals = [r for r in records if r.get("eval")]
    steps = [r for r in records if "loss" in r]
    first, last = evals[0], evals[-1]
    rows = "\n".join(f"| {k} | {first['eval'].get(k)} | {last['eval'].get(k)} |" for k in first["eval"])
    report = (f"# GRPO demo\n\n{len(steps)} steps of {cfg.rollout.prompts_per_step} prompts x G "
              f"{cfg.rollout.group_size} in {minutes:g} minutes from `{model}`, rewarded by DVReward "
              f"({verifier_url}). Held-out evaluation on {eval_prompts} prompts, oracle vs verifier:\n\n"
              f"| figure | step 0 | step {last['step']} |\n|---|---|---|\n{rows}\n\n"
              f"A few minutes of GRPO on a CPU moves these figures little; `alphagrpo train --config "
              f"configs/shapes-t2i.yaml` is the full run.\n\n![curves](curves.png)\n\n"
              f"Step 0: ![step 0](eval-000000.png)\n\nStep {last['step']}: "
              f"![last](eval-{last['step']:06d}.png)\n")  # fmt: skip
    (run_dir / "report.md").write_text(report)
    return {"steps": len(steps), "first": first["eval"], "last": last["eval"], "report": report}

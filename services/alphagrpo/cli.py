"""``alphagrpo``: the one command line of the stack. Subcommands import their service lazily.

    alphagrpo serve decomposer            # settings from DECOMPOSER_* environment variables
    alphagrpo decompose "a photo of two red apples"
    alphagrpo bench decomposer --json     # last line: one JSON object
    alphagrpo demo                        # the embedded-default demo (see README)
"""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated

import typer

app = typer.Typer(help="AlphaGRPO: DVReward services and GRPO training.", no_args_is_help=True)
serve_app = typer.Typer(help="Run a service.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON object as its last line with --json.",
                        no_args_is_help=True)
app.add_typer(serve_app, name="serve")
shapes_app = typer.Typer(help="ShapesWorld: the miniature world with exact ground truth.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(shapes_app, name="shapes")


def _emit(figures: dict, json_out: bool) -> None:
    """Figures as a table for people, and always one JSON object as the last line for scripts."""
    if not json_out:
        for k, v in figures.items():
            typer.echo(f"{k:32s} {v}")
    typer.echo(json.dumps(figures))


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serve(prefix: str, app_path: str, overrides: dict, workers: bool) -> None:
    """Apply CLI overrides to the service's environment settings, then run uvicorn on its app factory."""
    import importlib

    import uvicorn

    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{prefix}_{name.upper()}"] = str(value)
    s = importlib.import_module(app_path.split(".")[0] + ".settings").get_settings()
    _logging(s.log_level)
    kw = {"workers": s.workers} if workers else {}
    uvicorn.run(app_path, factory=True, host=s.host, port=s.port, log_level=s.log_level, access_log=False, **kw)


@serve_app.command("decomposer")
def serve_decomposer(
    host: Annotated[str | None, typer.Option(help="overrides DECOMPOSER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides DECOMPOSER_PORT")] = None,
    backend: Annotated[str | None, typer.Option(help="rules | openai | hf (overrides DECOMPOSER_BACKEND)")] = None,
) -> None:
    """Serve the decomposer (POST /v1/decompose)."""
    _serve("DECOMPOSER", "decomposer.app:create_app", {"host": host, "port": port, "backend": backend}, workers=True)


@serve_app.command("verifier")
def serve_verifier(
    host: Annotated[str | None, typer.Option(help="overrides VERIFIER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides VERIFIER_PORT")] = None,
    backend: Annotated[str | None, typer.Option(help="hf | openai (overrides VERIFIER_BACKEND)")] = None,
) -> None:
    """Serve the verifier (POST /v1/verify and /v1/reward). One process: the model and the dynamic batcher
    live in it; scale out with replicas, not workers."""
    _serve("VERIFIER", "verifier.app:create_app", {"host": host, "port": port, "backend": backend}, workers=False)


@app.command()
def decompose(prompts: list[str], backend: str = "rules") -> None:
    """Decompose prompts in-process (no server) and print the decompositions as JSON."""
    import asyncio

    from decomposer.app import build_cache
    from decomposer.backends import build_backend
    from decomposer.metrics import DecomposerMetrics
    from decomposer.service import DecomposerService
    from decomposer.settings import DecomposerSettings

    settings = DecomposerSettings(backend=backend)
    metrics = DecomposerMetrics()
    svc = DecomposerService(build_backend(settings), build_cache(settings, metrics), metrics)
    results = asyncio.run(svc.decompose(prompts))
    typer.echo(json.dumps([r.model_dump(mode="json", exclude_none=True) for r in results], indent=2))


@bench_app.command("decomposer")
def bench_decomposer(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    redis_url: Annotated[str | None, typer.Option(help="Redis to use; default: start a private redis-server")] = None,
    skip_dsg: Annotated[bool, typer.Option(help="skip the DSG-1k recall (needs the MiniLM model)")] = False,
) -> None:
    """GenEval atom coverage, cache latency, single-flight, Redis outage, DSG-1k recall, CompBench parse rate."""
    from benchmarks.decomposer import run

    _logging("warning")
    figures = run(redis_url=redis_url, skip_dsg=skip_dsg)
    _emit(figures, json_out)


@bench_app.command("verifier")
def bench_verifier(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    repeats: Annotated[int, typer.Option(help="timing repeats per measurement (median is reported)")] = 5,
) -> None:
    """Shared-prefix speed-up, cost of 8 questions vs 1, HTTP batching speed-up, shared vs separate equivalence."""
    from benchmarks.verifier import run

    _logging("warning")
    figures = run(repeats=repeats)
    _emit(figures, json_out)


@bench_app.command("trainer")
def bench_trainer(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    config: Annotated[str,
                      typer.Option(help="the training config whose rollout is measured")] = "configs/shapes-t2i.yaml",
    model: Annotated[str | None, typer.Option(help="UMM folder (default: the config's model_path)")] = None,
    steps: Annotated[int, typer.Option(help="measured GRPO steps (after one warm-up step)")] = 4,
    repeats: Annotated[int, typer.Option(help="timing repeats for the group-batching figure")] = 3,
) -> None:
    """Group-batched sampling speed-up (G=8), reward-wait fraction of real steps, bit-exact resume."""
    from benchmarks.trainer import run

    _logging("warning")
    _emit(run(config, model, steps=steps, repeats=repeats, progress=not json_out), json_out)


@bench_app.command("reward-signal")
def bench_reward_signal(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    model: Annotated[str, typer.Option(help="UMM folder whose rollouts are scored")] = "models/shapes-umm",
    verifier_model: Annotated[str | None,
                              typer.Option(help="verifier model folder (default: the embedded one)")] = None,
    prompts_n: Annotated[int, typer.Option("--prompts", help="prompts of --split, one group each")] = 32,
    group: Annotated[int, typer.Option(help="images per prompt (G)")] = 8,
    cfg_scale: float = 5.0,
    n_steps: int = 10,
    split: Annotated[str, typer.Option(
        help="train (what GRPO samples) or val (prompts a verifier fine-tune never saw)")] = "train",
) -> None:
    """Within-group agreement of DVReward variants with the oracle on a UMM's own rollouts: GRPO's signal."""
    from benchmarks.reward_signal import run

    if split not in ("train", "val"):
        raise typer.BadParameter("--split must be train or val (held-out prompts are for evaluation only)")
    _emit(run(model, verifier_model, n_prompts=prompts_n, group=group, n_steps=n_steps, cfg_scale=cfg_scale,
              split=split, progress=not json_out), json_out)  # fmt: skip


@bench_app.command("grad-snr")
def bench_grad_snr(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    config: Annotated[str,
                      typer.Option(help="the training config the variants start from")] = "configs/shapes-t2i.yaml",
    variant: Annotated[list[str] | None,
                       typer.Option(help="name:group.field=value,... (repeatable; name: alone is the config)")] = None,
    batches: Annotated[int, typer.Option(
        min=3, help="independent step gradients per variant (3 at least: the error needs them)")] = 8,
    oracle: Annotated[bool, typer.Option(
        help="reward by the ShapesWorld oracle (no services); --no-oracle uses the config's reward")] = True,
    model: Annotated[str | None, typer.Option(help="UMM folder (default: the config's model_path)")] = None,
) -> None:
    """Signal-to-noise ratio of the GRPO gradient per rollout recipe, at fixed weights: pairwise cosines of
    independent step gradients, and signal gathered per second (compare recipes by snr2_per_s)."""
    from benchmarks.grad_snr import run

    _logging("warning")
    try:
        figures = run(config, variant or [], batches=batches, oracle=oracle, model_path=model, progress=not json_out)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    _emit(figures, json_out)


@bench_app.command("counting")
def bench_counting(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    model: Annotated[str, typer.Option(help="UMM folder")] = "models/shapes-umm",
    split: Annotated[str, typer.Option(help="whose implicit number prompts: train, val or heldout")] = "train",
    repeats: Annotated[int, typer.Option(min=1, help="images per prompt and text")] = 2,
    cfg_scale: Annotated[list[float] | None,
                         typer.Option(help="guidance scale (repeatable; default 5, the GRPO configs')")] = None,
    n_steps: Annotated[int, typer.Option(min=1)] = 10,
    text: Annotated[list[str] | None, typer.Option(
        help="which texts (repeatable): explicit, implicit, planned, plan_span, plan_only (default: all)")] = None,
) -> None:
    """Does the image head draw the count its text asks for? The same noises under the explicit resolution, the
    implicit prompt alone, the prompt with its gold plan and two plan-only variants: mean count drawn per target
    and its slope."""
    from benchmarks.counting import CONDITIONS, run

    if split not in ("train", "val", "heldout"):
        raise typer.BadParameter("--split must be train, val or heldout")
    bad = [t for t in text or [] if t not in CONDITIONS]
    if bad:
        raise typer.BadParameter(f"--text {bad[0]!r}: must be one of {', '.join(CONDITIONS)}")
    _logging("warning")
    try:
        figures = run(model, split, repeats, tuple(cfg_scale or [5.0]), n_steps=n_steps,
                      texts=tuple(dict.fromkeys(text or CONDITIONS)), progress=not json_out)  # fmt: skip
    except FileNotFoundError as e:
        raise typer.BadParameter(f"--model: {e}") from None
    _emit(figures, json_out)


@bench_app.command("refinement")
def bench_refinement(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    model: Annotated[str, typer.Option(help="UMM folder (one that reads input images)")] = "models/shapes-umm",
    split: Annotated[str, typer.Option(help="whose explicit prompts: train, val or heldout")] = "heldout",
    prompts: Annotated[int, typer.Option(min=1, help="first images (a seeded sample of the split's prompts)")] = 300,
    synthetic: Annotated[int, typer.Option(min=0, help="synthetic near misses per kind (0: skip that table)")] = 48,
    cfg_scale: Annotated[float, typer.Option(help="guidance scale (the GRPO configs' is 5)")] = 5.0,
) -> None:
    """Which of a UMM's own mistakes does one refinement pass repair, under its own edit, the oracle's edit and
    no edit ('keep the image'), from the same noise; and the same on synthetic near misses, per kind."""
    from benchmarks.refinement import run

    if split not in ("train", "val", "heldout"):
        raise typer.BadParameter("--split must be train, val or heldout")
    _logging("warning")
    try:
        figures = run(model, split, prompts, synthetic=synthetic, cfg_scale=cfg_scale, progress=not json_out)
    except (FileNotFoundError, ValueError) as e:  # no such folder, not a UMM, a UMM that cannot read images
        raise typer.BadParameter(f"--model: {e}") from None
    _emit(figures, json_out)


@bench_app.command("load")
def bench_load(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    decomposer_requests: Annotated[int, typer.Option(help="cache-path requests to the decomposer")] = 2000,
    concurrency: Annotated[int, typer.Option(help="concurrent clients for the decomposer")] = 64,
    verifier_requests: Annotated[int, typer.Option(help="/v1/reward requests to the verifier")] = 200,
    verifier_concurrency: Annotated[int, typer.Option(help="concurrent clients for the verifier")] = 16,
) -> None:
    """Bounded load over loopback: errors (other than deliberate 429s), p50/p99 latency, RSS before/after."""
    from benchmarks.load import run

    _logging("warning")
    _emit(run(decomposer_requests, concurrency, verifier_requests, verifier_concurrency), json_out)


@shapes_app.command("oracle-selftest")
def shapes_oracle_selftest(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    n: Annotated[int, typer.Option(help="scenes per measurement")] = 1000,
    seed: int = 0,
) -> None:
    """The oracle's accuracy on clean renders (64 and 32 px) and under each degradation."""
    from shapesworld.evaluation import oracle_selftest

    figures = oracle_selftest(n, seed)
    _emit(figures, json_out)


# A training run never writes into models/ unless asked: the export replaces its folder whole, and the shipped
# folders hold hand-written model cards.
OUT_HELP = "where the finished model folder goes (replaced whole; default: RUN_DIR/model)"


@shapes_app.command("train-verifier")
def shapes_train_verifier(
    minutes: Annotated[float, typer.Option(help="training wall-time budget, evaluation excluded")] = 60.0,
    seed: Annotated[int, typer.Option(help="seeds init, data and order")] = 0,
    run_dir: Annotated[str, typer.Option(help="checkpoints and log.jsonl")] = "runs/shapes-verifier",
    out: Annotated[str | None, typer.Option(help=OUT_HELP)] = None,
    resume: Annotated[bool, typer.Option(help="continue from run_dir/checkpoint")] = False,
    batch: int = 64,
    lr: float = 1.5e-3,
    init: Annotated[str | None, typer.Option(help="fine-tune this verifier folder (default: from scratch)")] = None,
    onpolicy: Annotated[str | None,
                        typer.Option(help="a label-rollouts folder whose train rollouts join each batch")] = None,
    onpolicy_fraction: Annotated[float, typer.Option(help="share of each batch's answer rows from --onpolicy")] = 0.5,
) -> None:
    """Train the ShapesWorld verifier (a Qwen2-VL from scratch, or fine-tune one with --init) on CPU; seeded,
    resumable, with a progress bar."""
    from pathlib import Path

    from shapesworld.verifier_recipe import RecipeConfig, train

    if not 0.0 <= onpolicy_fraction < 1.0:
        raise typer.BadParameter("--onpolicy-fraction must be in [0, 1): the synthetic share keeps quality trained")
    cfg = RecipeConfig(seed=seed, minutes=minutes, batch=batch, lr=lr, init=init, onpolicy=onpolicy,
                       onpolicy_fraction=onpolicy_fraction)  # fmt: skip
    result = train(cfg, Path(run_dir), Path(out or Path(run_dir) / "model"), resume=resume)
    typer.echo(json.dumps(result))


@shapes_app.command("label-rollouts")
def shapes_label_rollouts(
    model: Annotated[str, typer.Option(help="the UMM folder whose rollouts to label")] = "models/shapes-umm",
    out: Annotated[str, typer.Option(help="folder for images/, labels.jsonl and summary.json")] = "runs/onpolicy",
    train_per_prompt: Annotated[int, typer.Option(help="rollouts per explicit training prompt")] = 2,
    val_per_prompt: Annotated[int, typer.Option(help="rollouts per explicit val prompt (validation only)")] = 2,
    seed: int = 0,
    config: Annotated[str, typer.Option(
        help="GRPO config whose rollout section sets the sampler")] = "configs/shapes-t2i.yaml",
    max_prompts: Annotated[int | None, typer.Option(help="a seeded sample of this many prompts per split")] = None,
) -> None:
    """Sample a UMM's rollouts as GRPO does, ask DVReward's questions and label them with the oracle: on-policy
    data for train-verifier --onpolicy (held-out prompts are never sampled). Prints the summary as JSON."""
    from pathlib import Path

    from shapesworld.onpolicy import check_request, label_rollouts
    from trainer.config import TrainConfig

    per_prompt = {"train": train_per_prompt, "val": val_per_prompt}
    try:
        check_request(per_prompt, max_prompts)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    summary = label_rollouts(model, Path(out), per_prompt, TrainConfig.from_yaml(config).rollout, seed=seed,
                             max_prompts=max_prompts)  # fmt: skip
    typer.echo(json.dumps(summary))


@shapes_app.command("train-umm")
def shapes_train_umm(
    minutes: Annotated[float, typer.Option(help="training wall-time budget, evaluation excluded")] = 120.0,
    seed: int = 0,
    run_dir: Annotated[str, typer.Option(help="checkpoints, log.jsonl and sample grids")] = "runs/shapes-umm",
    out: Annotated[str | None, typer.Option(help=OUT_HELP)] = None,
    resume: Annotated[bool, typer.Option(help="continue from run_dir/checkpoint")] = False,
    batch: int = 32,
    lr: float = 5e-4,
    plan_cond: Annotated[float,
                         typer.Option(help="share of image rows conditioned on 'prompt <think> plan </think>'")] = 0.0,
    plan_lm_weight: Annotated[float, typer.Option(help="weight of the plan-writing LM loss (0: off)")] = 0.0,
    fg_weight: Annotated[float, typer.Option(help="extra flow-loss weight on object pixels (0: plain mean)")] = 0.0,
    distractors: Annotated[int | None,
                           typer.Option(help="extra objects per training scene (default: 0-2 at random)")] = None,
    image_patch: Annotated[int, typer.Option(help="patch size of the LM's input-image tokens (0: none)")] = 0,
    refine_batch: Annotated[int, typer.Option(help="refinement rows per step (near miss + edit -> repaired)")] = 0,
    refine_lm_weight: Annotated[float, typer.Option(help="weight of the edit-instruction LM loss")] = 0.0,
    onpolicy_refine: Annotated[int, typer.Option(help="refinement rows per step from the model's own images, "
                                                      "repaired by one edit (0: none)")] = 0,
    onpolicy_pool: Annotated[int, typer.Option(help="images drawn for each pool of on-policy rows")] = 640,
    onpolicy_every: Annotated[int, typer.Option(help="steps between redraws of the on-policy pool")] = 150,
    category_weight: Annotated[list[str] | None,
                               typer.Option(help="CATEGORY=W: draw the image rows' prompts of that category W times as "
                                                 "often (repeatable; e.g. counting=8; implicit=W weighs the "
                                                 "implicit prompts among the plan-form rows)")] = None,
) -> None:
    """Pretrain the tiny UMM (flow matching on ShapesWorld) on CPU; seeded, resumable, with a progress bar.
    A resumed run may change the recipe (every version is kept in run_dir/recipe-history.jsonl)."""
    from pathlib import Path

    from recipes.umm import UMMRecipe, train_umm

    recipe = UMMRecipe(seed=seed, minutes=minutes, batch=batch, lr=lr, plan_cond=plan_cond,
                       plan_lm_weight=plan_lm_weight,
                       fg_weight=fg_weight, distractors=distractors, image_patch=image_patch, refine_batch=refine_batch,
                       refine_lm_weight=refine_lm_weight, onpolicy_refine=onpolicy_refine,
                       onpolicy_pool=onpolicy_pool, onpolicy_every=onpolicy_every,
                       category_weights=_category_weights(category_weight or []))  # fmt: skip
    if (refine_batch or onpolicy_refine) and not image_patch:
        raise typer.BadParameter("refinement needs the LM to see the image: give --image-patch (e.g. 8)")
    if onpolicy_refine < 0 or onpolicy_pool < 1 or onpolicy_every < 1:
        raise typer.BadParameter("--onpolicy-refine must be >= 0, --onpolicy-pool and --onpolicy-every >= 1")
    result = train_umm(recipe, Path(run_dir), Path(out or Path(run_dir) / "model"), resume=resume)
    typer.echo(json.dumps(result))


def _category_weights(items: list[str]) -> dict[str, float] | None:
    """``CATEGORY=W`` options as a dict, checked here (before any model is built) by the rule training uses."""
    from recipes.umm import spec_weights
    from shapesworld.prompts import prompts

    explicit = [p for p in prompts("train") if p.category != "implicit"]
    known = sorted({p.category for p in explicit} | {"implicit"})  # implicit: their plan-form rows
    out: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in known:
            raise typer.BadParameter(f"--category-weight {item!r}: category must be one of {known}")
        try:
            out[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--category-weight {item!r}: the weight must be a number") from None
    try:
        spec_weights(explicit, out)
    except ValueError as e:
        raise typer.BadParameter(f"--category-weight: {e}") from None
    return out or None


@shapes_app.command("export-umm")
def shapes_export_umm(
    run_dir: Annotated[str, typer.Option(help="a train-umm run folder")] = "runs/shapes-umm",
    out: Annotated[str, typer.Option(help="the model folder to write")] = "runs/shapes-umm-export",
    n_eval: Annotated[int, typer.Option(help="evaluate the export on this many held-out prompts (0: no)")] = 0,
    card: Annotated[bool, typer.Option(help="also write the model card (README.md) from the measured figures")] = False,
    cfg_scale: Annotated[float | None,
                         typer.Option(help="guidance scale of the evaluation (default: the run's)")] = None,
) -> None:
    """Write the EMA weights of a (running or stopped) train-umm run's checkpoint as a model folder, optionally
    evaluated by the oracle and with its model card; prints one JSON object."""
    from pathlib import Path

    from recipes.umm import export_umm
    from recipes.umm_card import write_card

    figures = export_umm(Path(run_dir), Path(out), n_eval=n_eval, cfg_scale=cfg_scale)
    if card:
        write_card(Path(out), Path(run_dir) / "recipe-history.jsonl")
    typer.echo(json.dumps(figures))


@shapes_app.command("eval-umm")
def shapes_eval_umm(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    model: Annotated[str, typer.Option(help="UMM folder")] = "models/shapes-umm",
    split: Annotated[str, typer.Option(help="train or val to choose settings; heldout to report")] = "train",
    prompts_n: Annotated[int, typer.Option("--prompts", min=1, help="seeded sample of explicit prompts")] = 300,
    cfg_scale: Annotated[list[float] | None, typer.Option(help="guidance scale (repeatable; default 5)")] = None,
    n_steps: Annotated[int, typer.Option(min=1, help="sampler steps (the GRPO evaluation's: 10)")] = 10,
) -> None:
    """Oracle accuracy of a UMM folder on explicit prompts of a split, per guidance scale (same prompts and
    noises for each): accuracy, atom accuracy, per category and the signed miscount of counting prompts."""
    from recipes.umm import evaluate_folder

    if split not in ("train", "val", "heldout"):
        raise typer.BadParameter("--split must be train, val or heldout")
    try:
        figures = evaluate_folder(model, split, prompts_n, tuple(cfg_scale or [5.0]), n_steps=n_steps,
                                  progress=not json_out)  # fmt: skip
    except FileNotFoundError as e:
        raise typer.BadParameter(f"--model: {e}") from None
    _emit(figures, json_out)


@shapes_app.command("eval-verifier")
def shapes_eval_verifier(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    model: Annotated[str | None, typer.Option(help="model folder (default: the verifier's embedded default)")] = None,
    n: Annotated[int, typer.Option(help="semantic questions (quality and holistic get n/3 each)")] = 1200,
    prompts_n: Annotated[int, typer.Option("--prompts",
                                           help="held-out prompts for the reward-oracle correlation")] = 300,
) -> None:
    """The verifier against the oracle on held-out scenes: accuracy, quality, holistic, ECE, reward-oracle Spearman."""
    from benchmarks.shapes_verifier import run
    from verifier.models import resolve_model_path

    figures = run(resolve_model_path(model), n=n, n_prompts=prompts_n)
    _emit(figures, json_out)


@shapes_app.command("export-lexicon")
def shapes_export_lexicon(path: str = "configs/shapesworld-lexicon.json") -> None:
    """Write the world's knowledge base as a rules-decomposer lexicon (DECOMPOSER_RULES_LEXICON)."""
    from pathlib import Path

    from shapesworld.prompts import lexicon_extension

    Path(path).write_text(json.dumps(lexicon_extension(), indent=1) + "\n")
    typer.echo(f"wrote {path}")


@app.command()
def plan(
    n_gpus: int = 8,
    prompts_per_gpu: int = 2,
    group_size: int = 14,
    step_s: float = 60.0,
    questions: int = 12,
    prefix_tokens: int = 1300,
    question_tokens: int = 24,
    verifier_tokens_per_s: Annotated[float, typer.Option(help="one verifier replica's measured prefill rate")] = 8400.0,
    shared_prefix: bool = True,
    unique_prompts: int = 20_000,
    decompositions_per_s: Annotated[float, typer.Option(help="one decomposer replica's rate on cache misses")] = 2.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verifier and decomposer replicas, Redis size and reward latency for a training set-up."""
    from serving.plan import PlanInput, make_plan

    figures = make_plan(PlanInput(n_gpus, prompts_per_gpu, group_size, step_s, questions, prefix_tokens,
                                  question_tokens, verifier_tokens_per_s, shared_prefix, unique_prompts,
                                  decompositions_per_s))  # fmt: skip
    _emit(figures, json_out)


@app.command()
def train(
    config: Annotated[str | None, typer.Option(help="YAML training config (default: TRAINER_CONFIG)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the run folder's checkpoint")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set",
                                                   help="group.field=value over the config (repeatable)")] = None,
) -> None:
    """GRPO on the tiny UMM with DVReward from the verifier at reward.verifier_url (start it first). Under
    torchrun, every rank runs this; gloo on CPU, NCCL on GPUs. TRAINER_* variables override the config's
    deployment fields (verifier URL and key, model, run folder, monitor address); --set overrides both."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from recipes.grpo import ShapesTask, build_fetcher
    from trainer.config import TrainConfig
    from trainer.distributed import init_from_env
    from trainer.monitor import Monitor
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.settings import TrainerSettings
    from trainer.train import train as run_training

    settings = TrainerSettings()
    _logging(settings.log_level)
    dist = init_from_env()
    try:
        cfg = settings.apply(TrainConfig.from_yaml(config or settings.config)).with_overrides(set_ or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    policy = TinyUMM.load(cfg.model_path).train()
    if cfg.reflect.enabled and not policy.cfg.image_patch:
        raise typer.BadParameter(f"reflect.enabled needs a UMM that reads images (image_patch > 0); {cfg.model_path} "
                                 "does not: pretrain one with train-umm --image-patch 8 --refine-batch 8")  # fmt: skip
    key = settings.verifier_api_key.get_secret_value() if settings.verifier_api_key else None
    if cfg.reward.mode == "oracle":  # a diagnostic ceiling: the evaluation's judge as the reward, no services
        logging.getLogger("alphagrpo").warning("reward.mode oracle: rewarded by the ShapesWorld oracle, a diagnostic "
                                              "ceiling, not a result")
    fetcher = build_fetcher(cfg, key)
    task = ShapesTask(AutoTokenizer.from_pretrained(cfg.model_path), fetcher, Path(cfg.run.run_dir),
                      **cfg.task_kwargs())  # fmt: skip
    monitor = None
    if dist.is_main and cfg.run.monitor_port is not None:
        monitor = Monitor(cfg.run.steps, cfg.run.run_dir)
        typer.echo(f"trainer status on {monitor.serve(cfg.run.monitor_port, host=settings.monitor_host)}/status",
                   err=True)
    try:
        records = run_training(cfg, policy, task, fetcher, resume=resume, monitor=monitor)
    finally:
        fetcher.close()
        if monitor is not None:
            monitor.close()
    if dist.is_main:
        evals = [r for r in records if r.get("eval")]
        summary = {"steps": records[-1]["step"] if records else 0, "run_dir": cfg.run.run_dir,
                   "first_eval": evals[0] if evals else None, "last_eval": evals[-1] if evals else None}  # fmt: skip
        typer.echo(json.dumps(summary))


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="what to draw")],
    model: Annotated[str, typer.Option(help="UMM folder")] = "models/shapes-umm",
    reflect: Annotated[int, typer.Option(
        min=0, max=20, help="refine up to K times; stop at the first pass that does not raise DVReward")] = 0,
    think: Annotated[bool, typer.Option(help="write a plan first (reasoning text-to-image)")] = False,
    verifier_url: Annotated[str | None,
                            typer.Option(help="a running verifier (default: start decomposer + verifier here)")] = None,
    out: Annotated[str, typer.Option(help="folder for round-*.png, final.png and generate.json")] = "runs/generate",
    seed: int = 0,
    margin: Annotated[float, typer.Option(help="a refinement must beat the current DVReward by more than this")] = 0.0,
) -> None:
    """Draw an image for a prompt with a UMM (optionally planning first) and refine it with DVReward as the
    judge of when to stop. Prints one JSON object: every round's reward, text and image, and why it stopped."""
    from contextlib import ExitStack
    from pathlib import Path

    from alphagrpo.demo import SHAPES_LEXICON_ENV
    from alphagrpo.generate import generate as run
    from serving.launch import start_decomposer, start_verifier

    _logging("warning")
    with ExitStack() as stack:
        if verifier_url is None:  # the ShapesWorld lexicon, so that implicit prompts get explicit questions
            decomposer, durl = start_decomposer(env=SHAPES_LEXICON_ENV)
            stack.enter_context(decomposer)
            verifier, verifier_url = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl})
            stack.enter_context(verifier)
        summary = run(prompt, Path(model), verifier_url, Path(out), reflect=reflect, think=think, seed=seed,
                      margin=margin)
    for r in summary["rounds"]:
        score = "NaN" if r["reward"] is None else f"{r['reward']:.4f}"
        typer.echo(f"round {r['round']}: DVReward {score}  {r['text'] or ''}  {r['image']}", err=True)
    typer.echo(f"{summary['stopped']}; final image {summary['final_image']}", err=True)
    typer.echo(json.dumps(summary))


@app.command()
def dashboard(
    dashboard_file: Annotated[str, typer.Option(
        "--dashboard", help="a provisioned Grafana dashboard JSON")] = "deploy/grafana/dashboards/trainer.json",
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL")] = "http://127.0.0.1:9090",
    minutes: Annotated[float, typer.Option(help="the window that ends now")] = 15.0,
    out: Annotated[str, typer.Option(help="PNG to write")] = "docs/dashboard-trainer.png",
) -> None:
    """Render a Grafana dashboard's panels from Prometheus to one PNG (each panel's PromQL evaluated by
    Prometheus, drawn with matplotlib), for machines without Grafana. Prints one JSON object."""
    from pathlib import Path

    import httpx

    from alphagrpo.dashboard import render_dashboard

    try:
        figures = render_dashboard(Path(dashboard_file), prometheus.rstrip("/"), Path(out), minutes=minutes)
    except httpx.HTTPError as e:
        raise typer.BadParameter(f"cannot query Prometheus at {prometheus}: {e}", param_hint="--prometheus") from e
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e), param_hint="--dashboard") from e
    typer.echo(json.dumps(figures))


@app.command("compare-evals")
def compare_evals(
    before: Annotated[str, typer.Argument(help="an eval-<step>-verdicts.tsv of a run (e.g. step 0)")],
    after: Annotated[str, typer.Argument(help="a later one of the same evaluation (same prompts and noise)")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
) -> None:
    """Oracle accuracy change between two evaluations, paired per image, with its standard error, per category."""
    from recipes.paired import compare

    try:
        figures = compare(before, after)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise typer.BadParameter(str(e)) from e
    _emit(figures, json_out)


@app.command("export-openapi")
def export_openapi(folder: str = "docs") -> None:
    """Write each service's OpenAPI schema to docs/openapi-<service>.json (a test checks they are current)."""
    from pathlib import Path

    from serving.openapi import service_schemas

    for name, schema in service_schemas().items():
        path = Path(folder) / f"openapi-{name}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        typer.echo(f"wrote {path}")


@app.command()
def demo(
    prompt: Annotated[str, typer.Option(help="the prompt")] = "a red circle to the left of a blue square",
    image: Annotated[str | None, typer.Option(help="a PNG/JPEG/WebP to score (default: docs/example.png)")] = None,
    minutes: Annotated[float,
                       typer.Option(help="GRPO training time after the reward demo (0: reward demo only)")] = 3.0,
    run_dir: Annotated[str, typer.Option(help="where the GRPO demo leaves its report, curves and grids")] = "runs/demo",
    model: Annotated[str | None, typer.Option(help="UMM folder (default: models/shapes-umm)")] = None,
    eval_prompts: Annotated[int, typer.Option(help="held-out prompts evaluated before and after")] = 64,
) -> None:
    """Start the decomposer and the verifier on their embedded defaults, score an image with DVReward, then
    train the tiny UMM with GRPO against them for a few minutes (report, curves and grids in --run-dir)."""
    from pathlib import Path

    from alphagrpo.demo import DEFAULT_UMM, run_demo

    _logging("warning")
    run_demo(prompt, Path(image) if image else None, minutes=minutes, run_dir=Path(run_dir),
             model=Path(model) if model else DEFAULT_UMM, eval_prompts=eval_prompts)  # fmt: skip


if __name__ == "__main__":
    app()

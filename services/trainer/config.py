"""Trainer configuration: grouped dataclasses, one line of help per field, loaded from YAML (``configs/``).

``__post_init__`` rejects impossible combinations and says what to change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class RolloutConfig:
    group_size: int = 8  # G: images per prompt; advantages are relative within a group
    prompts_per_step: int = 4  # prompts per training step (x G images)
    chunks: int = 2  # rollout sub-batches; each chunk's rewards are fetched while the next is sampled
    n_steps: int = 12  # sampler transitions
    shift: float = 3.0  # timestep shift of the time grid (the reference uses 3)
    window_len: int = 4  # stochastic (trained) transitions per rollout
    window_range: tuple[int, int] = (0, 6)  # the window starts uniformly in [lo, hi]
    noise_level: float = 0.7  # a in the SDE's sigma_t = a sqrt(t / (1 - t))
    cfg_scale: float = 3.0  # classifier-free guidance inside the policy, identical at rollout and training
    # the G samples of a prompt start from one initial noise, so the group differs only by the SDE window's noise:
    # the advantage then speaks of the trained transitions (common random numbers) instead of mostly of the
    # untrained starting point; off by default (the reference and Flow-GRPO draw a noise per sample)
    shared_noise: bool = False
    # the window's SDE noise is constant over noise_block x noise_block pixel blocks (flow_sde's block noise):
    # f^2 fewer explored dimensions for the score-function gradient; 1 = the paper's per-pixel noise
    noise_block: int = 1
    # the window's SDE noise comes in mirrored pairs (eps, -eps) within a group, so a pair's reward difference
    # is a finite difference along eps (ES's mirrored sampling); with shared_noise a pair starts from one state
    antithetic: bool = False

    def __post_init__(self) -> None:
        if self.antithetic and self.group_size % 2:
            raise ValueError(f"rollout.antithetic pairs a group's samples: group_size ({self.group_size}) must be even")
        if self.noise_block < 1:
            raise ValueError(f"rollout.noise_block must be >= 1 (1 = per-pixel noise), got {self.noise_block}")
        if self.group_size < 2:
            raise ValueError("GRPO needs group_size >= 2: advantages compare samples of one prompt")
        if self.prompts_per_step % self.chunks:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be divisible by chunks ({self.chunks})")
        lo, hi = self.window_range
        if not 0 <= lo <= hi or hi + self.window_len > self.n_steps:
            raise ValueError(f"window_range {self.window_range} + window_len {self.window_len} must fit in n_steps "
                             f"{self.n_steps}")


@dataclass
class GRPOConfig:
    std_scope: str = "round"  # "round" (the reference) or "group"
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip
    clip_range: float = 1e-4  # image ratio clip; choose it against the logged ratio spread
    inner_epochs: int = 1  # passes over one rollout batch (1 = on-policy)
    kl_coef: float = 0.0  # image KL to the reference (the loaded base); 0 = off, as the reference's main configs
    # the image loss: "flow_grpo" (the paper's: clipped likelihood ratio of the SDE window's transitions) or "nft"
    # (DiffusionNFT's forward-process loss on the finished images, grpo.nft_loss; our departure, same advantages)
    objective: str = "flow_grpo"
    nft_beta: float = 1.0  # nft: the step toward the implicit positive policy (and the trust region's stiffness)
    nft_timesteps: int = 2  # nft: noised copies of each image per step, at times drawn as the sampler spaces them
    # nft: sample rollouts (and v_old) from an EMA of the trained weights, DiffusionNFT's soft update
    # (trainer/sampling_ema.py): decay min(ema_rate * step, ema_max); ema_max 0 = off (on-policy)
    ema_max: float = 0.0
    ema_rate: float = 0.001
    # the image loss also trains the policy's language model through the image head's conditioning
    # (our default: the tiny UMM's LM is its text encoder); False = the reference's scope, the context is built
    # without gradient, so only the text loss (plans, edits) trains the LM
    context_grad: bool = True

    def __post_init__(self) -> None:
        if self.std_scope not in ("round", "group"):
            raise ValueError("grpo.std_scope must be 'round' or 'group'")
        if self.objective not in ("flow_grpo", "nft"):
            raise ValueError(f"grpo.objective must be 'flow_grpo' or 'nft', not {self.objective!r}")
        if self.nft_beta <= 0 or self.nft_timesteps < 1:
            raise ValueError("grpo.nft_beta must be > 0 and grpo.nft_timesteps >= 1")
        if not 0 <= self.ema_max < 1 or self.ema_rate < 0:
            raise ValueError(f"grpo.ema_max must be in [0, 1) and grpo.ema_rate >= 0; got {self.ema_max}, "
                             f"{self.ema_rate}")
        if self.ema_max > 0 and self.objective != "nft":
            raise ValueError("grpo.ema_max > 0 needs grpo.objective 'nft': Flow-GRPO's ratio is taken against the "
                             "rollout policy, which must then be the trained one")  # fmt: skip


@dataclass
class ReasonConfig:
    enabled: bool = False  # think, then generate: sample a plan per sample, condition its image on prompt + plan
    max_plan_tokens: int = 24  # a plan that has not closed </think> by then gets no format reward
    temperature: float = 1.0  # plan sampling (log-probs are always at temperature 1, as the reference)
    top_p: float = 0.8  # the reference's plan sampling
    format_weight: float = 1.0  # reward = DVReward + format_weight x [well-formed plan] (the reference adds 1)
    text_loss_weight: float = 1.0  # plan loss x (trained image timesteps) x this (reference: 1.0 for T2I)
    text_clip_low: float = 0.2
    text_clip_high: float = 0.28
    text_kl_coef: float = 0.0  # k3 KL of the plan tokens to the reference (0 = off; refinement edits: reflect's)
    eval_temperature: float = 0.3  # plans at evaluation (seeded), as the reference's in-training eval

    def __post_init__(self) -> None:
        if self.max_plan_tokens < 2 or self.temperature <= 0 or self.eval_temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("reason: max_plan_tokens >= 2, temperatures > 0 and 0 < top_p <= 1")
        if self.text_kl_coef < 0:
            raise ValueError(f"reason.text_kl_coef must be >= 0, got {self.text_kl_coef}")


@dataclass
class ReflectConfig:
    enabled: bool = False  # self-reflective refinement rounds (stage 1: initial image; stage 2: G refinements)
    every: int = 1  # a refinement round every `every` steps, text-to-image rounds between (mixed training)
    n_initial: int = 4  # N deterministic candidates per prompt; the lowest-DVReward one is refined (R_init)
    rectify: bool = True  # false-positive rectification: a refinement that does not beat R_init gets R_init
    margin: float = 0.0  # a refinement must beat R_init by more than this to count as an improvement
    skip_without_improvement: bool = True  # skip (and count) a rectified round where nothing improved
    max_edit_tokens: int = 12  # the critique + edit written before the refined image
    temperature: float = 1.0
    top_p: float = 0.8
    # edit loss x trained image steps x this (0.5 x 2 = 1: like one image step, as the reference)
    text_loss_weight: float = 0.5
    text_kl_coef: float = 0.0  # k3 KL of the critique + edit tokens to the reference (0 = off); plans: reason's
    # the edit's sequence ratio is clipped by reason.text_clip_low / text_clip_high, one text clip for plans and edits
    eval_temperature: float = 0.3

    def __post_init__(self) -> None:
        if self.text_kl_coef < 0:
            raise ValueError(f"reflect.text_kl_coef must be >= 0, got {self.text_kl_coef}")
        if self.every < 1 or self.n_initial < 1 or self.max_edit_tokens < 2 or self.temperature <= 0:
            raise ValueError("reflect: every >= 1, n_initial >= 1, max_edit_tokens >= 2, temperature > 0")


@dataclass
class TaskConfig:
    train_categories: list[str] | None = None  # prompt categories trained on (None: the task's default, explicit)
    eval_categories: list[str] | None = None  # held-out categories evaluated (None: the task's default)


def _typed(group: str, f, value):
    """YAML 1.1 reads ``5e-5`` (no dot) as a string; take it as the float a float field means, or say which field.
    A bool field takes only true/false (YAML's yes/no too): ``maybe`` or ``0`` would otherwise pass as truthy."""
    kind = str(f.type).split(" | ")[0]
    if isinstance(value, str) and kind == "float":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{group}.{f.name}: expected a number, got {value!r}") from None
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"{group}.{f.name}: expected true or false, got {value!r}")
    return value


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    # learning rate of the policy's language model (``policy.language_parameters()``: what writes plans and edits
    # and encodes the prompt), the rest keeps ``lr``; None = ``lr`` for all. Our knob, not the paper's
    lm_lr: float | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0 or (self.lm_lr is not None and self.lm_lr <= 0):
            raise ValueError(f"optim.lr and optim.lm_lr must be > 0, got {self.lr}, {self.lm_lr}")


@dataclass
class RewardConfig:
    verifier_url: str = "http://127.0.0.1:8002"
    aggregation: str = "geometric"
    patience_s: float = 600.0  # how long a dead verifier may pause training
    mode: str = "decomposed"  # "decomposed" (DVReward) or "holistic" (one "Does the image match: ...?" question)
    # or "oracle": the ShapesWorld oracle's atom accuracy, a diagnostic ceiling (shapesworld/oracle_reward.py),
    # never a result: it rewards by the evaluation's own judge
    max_items_per_request: int = 64  # the verifier's VERIFIER_MAX_ITEMS; bigger batches go as several requests
    incomplete: str = "fail"  # partly decomposed prompts: "fail" (NaN, excluded and counted) or "score"
    signal: str = "reward"  # train on "reward" (the aggregation, the paper's) or "semantic" (quality ignored)
    oracle_signal: str = "atoms"  # mode oracle only: "atoms" (share of gold atoms that hold) or "correct" (all hold)

    def __post_init__(self) -> None:
        from typing import get_args

        from dvreward.schemas import AggregationMethod

        if self.aggregation not in get_args(AggregationMethod):
            raise ValueError(f"reward.aggregation must be one of {', '.join(get_args(AggregationMethod))}")
        if self.mode not in ("decomposed", "holistic", "oracle"):
            raise ValueError("reward.mode must be 'decomposed', 'holistic' or 'oracle' (a diagnostic ceiling)")
        if self.oracle_signal not in ("atoms", "correct"):
            raise ValueError("reward.oracle_signal must be 'atoms' or 'correct'")
        if self.incomplete not in ("fail", "score"):
            raise ValueError("reward.incomplete must be 'fail' or 'score'")
        if self.signal not in ("reward", "semantic"):
            raise ValueError("reward.signal must be 'reward' or 'semantic'")
        if self.signal == "semantic" and self.mode == "holistic":
            raise ValueError("reward.signal 'semantic' needs the decomposition (mode 'decomposed')")


@dataclass
class EvalConfig:
    prompts: int = 500  # fixed held-out explicit prompts (seeded sample); report the standard error
    seed: int = 1234  # prompt sample and sampling noise
    n_steps: int = 12  # ODE steps at evaluation (deterministic sampler)
    shift: float = 3.0
    cfg_scale: float = 3.0
    repeats: int = 1  # images per held-out prompt (different noise): small prompt sets get a tighter estimate


@dataclass
class RunConfig:
    steps: int = 100
    seed: int = 0
    run_dir: str = "runs/grpo"
    checkpoint_every: int = 10
    eval_every: int = 10  # 0 = never
    eval_at_start: bool = True  # evaluate the loaded model before step 1 (the baseline of the run)
    max_minutes: float | None = None  # stop (checkpoint and final eval) after this much wall time
    monitor_port: int | None = None  # serve /status and /metrics here while training (0 = a free port)


@dataclass
class TrainConfig:
    model_path: str = "models/shapes-umm"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    reason: ReasonConfig = field(default_factory=ReasonConfig)
    reflect: ReflectConfig = field(default_factory=ReflectConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.grpo.ema_max > 0 and (self.reason.enabled or self.reflect.enabled):
            raise ValueError("grpo.ema_max > 0 is for text-to-image only: the plan's token ratio is taken against "
                             "the rollout policy, which must then be the trained one")  # fmt: skip
        if self.reason.text_kl_coef > 0 and self.reflect.enabled and not self.reason.enabled:  # would hold nothing
            raise ValueError("reason.text_kl_coef holds plans, and reason is disabled; the KL of refinement edits "
                             "is reflect.text_kl_coef")  # fmt: skip

    def task_kwargs(self) -> dict:
        """Keyword arguments of the task (held-out evaluation, prompt categories, planning)."""
        e = self.eval
        return {"eval_prompts": e.prompts, "eval_seed": e.seed, "n_steps": e.n_steps, "shift": e.shift,
                "cfg_scale": e.cfg_scale, "eval_repeats": e.repeats, "train_categories": self.task.train_categories,
                "eval_categories": self.task.eval_categories,
                "reason": self.reason if self.reason.enabled else None,
                "reflect": self.reflect if self.reflect.enabled else None}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        groups = {"rollout": RolloutConfig, "grpo": GRPOConfig, "reason": ReasonConfig, "reflect": ReflectConfig,
                  "task": TaskConfig,
                  "optim": OptimConfig, "reward": RewardConfig, "eval": EvalConfig, "run": RunConfig}  # fmt: skip
        unknown = sorted(set(raw) - set(groups) - {"model_path"})
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted([*groups, 'model_path'])}")
        kwargs: dict = {k: v for k, v in raw.items() if k not in groups}
        for name, klass in groups.items():
            value = dict(raw.get(name) or {})
            bad = sorted(set(value) - {f.name for f in fields(klass)})
            if bad:
                raise ValueError(f"unknown keys {bad} in '{name}'; known: {sorted(f.name for f in fields(klass))}")
            if "window_range" in value:
                value["window_range"] = tuple(value["window_range"])
            for f in fields(klass):
                if f.name in value:
                    value[f.name] = _typed(name, f, value[f.name])
            kwargs[name] = klass(**value)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, sets: list[str]) -> TrainConfig:
        """A copy with ``group.field=value`` settings applied (values parsed as YAML: ``rollout.window_len=4``,
        ``rollout.shared_noise=true``, ``rollout.window_range=[0,3]``), validated as a config file would be."""
        import yaml

        raw = self.to_dict()
        for s in sets:
            key, sep, value = s.partition("=")
            parts = key.strip().split(".")
            if not sep or not parts[-1]:
                raise ValueError(f"override {s!r}: expected group.field=value or model_path=value")
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ValueError(f"override {s!r}: the value is not valid YAML ({e.problem})") from e
            if len(parts) == 1 and parts[0] in raw and not isinstance(raw[parts[0]], dict):
                raw[parts[0]] = parsed
            elif len(parts) == 2 and isinstance(raw.get(parts[0]), dict):
                raw[parts[0]][parts[1]] = parsed
            else:
                raise ValueError(f"override {s!r}: {key!r} names no config group.field")
        return TrainConfig.from_dict(raw)

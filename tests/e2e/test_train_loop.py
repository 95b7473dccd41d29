"""A short GRPO run on CPU against real reward services: parameters change, losses are finite, invariants
hold, the log is written, and a resumed run ends bit-identical to an uninterrupted one."""

import json
import math
import time
from pathlib import Path

import httpx
import pytest
import torch

from decomposer.app import create_app as create_decomposer
from decomposer.settings import DecomposerSettings
from serving.launch import ThreadedServer, free_port
from tests.helpers.shapes_task import ToyTask
from trainer.config import (
    GRPOConfig,
    ReasonConfig,
    ReflectConfig,
    RewardConfig,
    RolloutConfig,
    RunConfig,
    TrainConfig,
)
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.reward import RewardFetcher
from trainer.train import train
from verifier.app import create_app as create_verifier
from verifier.settings import VerifierSettings
from verifier.tiny import build_tiny_vlm

pytestmark = pytest.mark.slow


LEXICON = Path(__file__).resolve().parents[2] / "configs" / "shapesworld-lexicon.json"


def _reward_services(tmp_path_factory, lexicon):
    model = build_tiny_vlm(tmp_path_factory.mktemp("v") / "qwen", "qwen2_vl", seed=8)
    with ThreadedServer(create_decomposer(DecomposerSettings(rules_lexicon=lexicon)), free_port()) as d:
        # one image per batch: rewards then do not depend on how requests happen to be batched
        settings = VerifierSettings(hf_model_path=str(model), decomposer_url=d.url, max_batch_images=1)
        with ThreadedServer(create_verifier(settings), free_port()) as v:
            while httpx.get(v.url + "/health").status_code != 200:
                time.sleep(0.05)
            yield v.url


@pytest.fixture(scope="module")
def verifier_url(tmp_path_factory):
    # the ShapesWorld lexicon, as the reasoning configs use: without it implicit prompts decompose only in part
    yield from _reward_services(tmp_path_factory, str(LEXICON))


@pytest.fixture(scope="module")
def verifier_url_no_lexicon(tmp_path_factory):
    yield from _reward_services(tmp_path_factory, None)


def policy(task):
    torch.manual_seed(0)
    return TinyUMM(TinyUMMConfig(vocab_size=len(task.tok) + (-len(task.tok)) % 32, pad_token_id=task.tok.pad_token_id,
                                 text_hidden=32, text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32,
                                 attention_head_dim=8))  # fmt: skip


def config(run_dir, steps, url):
    return TrainConfig(
        rollout=RolloutConfig(group_size=3, prompts_per_step=2, chunks=2, n_steps=4, window_len=2, window_range=(0, 1)),
        grpo=GRPOConfig(clip_range=1e-2), reward=RewardConfig(verifier_url=url),
        run=RunConfig(steps=steps, run_dir=str(run_dir), checkpoint_every=1, eval_every=0),
    )  # fmt: skip


class MonitoredTask(ToyTask):
    """Reads the trainer's own /status and /metrics over HTTP from inside the run (at each evaluation)."""

    def __init__(self, monitor):
        super().__init__()
        self.monitor, self.seen = monitor, []

    def evaluate(self, policy, step):
        status = httpx.get(self.monitor_url + "/status").json()
        metrics = httpx.get(self.monitor_url + "/metrics").text
        self.seen.append((step, status, metrics))
        return {"oracle_accuracy": 0.5, "verifier_reward": 0.5}


def test_short_run_changes_parameters(verifier_url, tmp_path):
    from trainer.monitor import Monitor

    monitor = Monitor(total_steps=2, run_dir=tmp_path / "run")
    task = MonitoredTask(monitor)
    task.monitor_url = monitor.serve(0)
    model = policy(task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(tmp_path / "run", 2, verifier_url)
    cfg.run.eval_every = 2
    try:
        records = train(cfg, model, task, RewardFetcher(verifier_url), progress=False, monitor=monitor)
        final = httpx.get(task.monitor_url + "/status").json()
    finally:
        monitor.close()
    assert records[0] == {"step": 0, "eval": {"oracle_accuracy": 0.5, "verifier_reward": 0.5}}  # baseline first
    records = records[1:]
    assert len(records) == 2 and (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000
    # the status seen during step 2's evaluation is step 1's; the final one is step 2's, with the eval
    (step, status, metrics), = [s for s in task.seen if s[0] == 2]
    assert status["state"] == "training" and status["step"] == 1 and status["total_steps"] == 2
    assert "alphagrpo_trainer_step 1.0" in metrics and "alphagrpo_trainer_reward_mean" in metrics
    assert final["state"] == "finished" and final["step"] == 2 and final["last_eval"]["oracle_accuracy"] == 0.5
    assert final["reward_mean"] == records[-1]["reward_mean"] and 0 <= final["reward_wait_fraction"] <= 1
    for r in records:
        assert not r["skipped"] and math.isfinite(r["loss"]) and 0 < r["reward_mean"] < 1 and r["n_invalid"] == 0
        assert 0 <= r["reward_wait_fraction"] <= 1 and r["samples_per_second"] > 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("unet.") for k in changed) and any(k.startswith("lm.") for k in changed)
    # the run folder names the verifier that rewarded it, down to a hash of its weights
    source = json.loads((tmp_path / "run" / "reward_source.json").read_text())
    health = httpx.get(verifier_url + "/health").json()
    assert source["status"] == "ok" and source["backend"] == "hf" and source["model"] == "qwen"
    assert source["revision"] == health["revision"] and len(source["revision"]) == 12
    assert source["aggregation"] == "geometric" and source["url"] == verifier_url


def test_resume_is_bit_exact(verifier_url, tmp_path):
    task = ToyTask()
    straight = policy(task)
    train(config(tmp_path / "a", 3, verifier_url), straight, task, RewardFetcher(verifier_url), progress=False)
    interrupted = policy(task)
    train(config(tmp_path / "b", 2, verifier_url), interrupted, task, RewardFetcher(verifier_url), progress=False)
    resumed = policy(task)  # a fresh process: weights and optimizer come from the checkpoint
    train(config(tmp_path / "b", 3, verifier_url), resumed, task, RewardFetcher(verifier_url), resume=True,
          progress=False)  # fmt: skip
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_kl_term_and_holistic_reward(verifier_url, tmp_path):
    """With a KL coefficient the loss carries KL to the frozen base (0 on the first step, > 0 after an
    update); the holistic mode asks the verifier one question per image and still trains."""
    task = ToyTask()
    model = policy(task)
    cfg = config(tmp_path / "kl", 2, verifier_url)
    cfg.grpo.kl_coef = 0.5
    cfg.optim.lr = 1e-3
    records = train(cfg, model, task, RewardFetcher(verifier_url, holistic=True), progress=False)
    assert records[0]["kl"] == 0.0 and records[1]["kl"] > 0
    assert all(0 < r["reward_mean"] < 1 and not r["skipped"] for r in records)
    fetcher = RewardFetcher(verifier_url, holistic=True)
    one = fetcher.wait(fetcher.submit(["a red circle"], task.to_images(torch.zeros(1, 3, 32, 32))))
    assert len(one.values) == 1 and math.isnan(one.quality[0])  # no quality question: holistic P(yes) only


def test_nft_objective_trains_resumes_bit_exactly_and_keeps_its_trust_region(verifier_url, tmp_path):
    """grpo.objective nft (DiffusionNFT's forward-process loss on the finished images): against the real
    services it trains the image head and the LM, with two inner passes (the second against the first pass's
    cached velocities) and a KL to the frozen base; and a resumed nft run ends bit-identical."""
    task = ToyTask()

    def nft_config(run_dir, steps):
        cfg = config(run_dir, steps, verifier_url)
        cfg.grpo = GRPOConfig(objective="nft", nft_timesteps=2, nft_beta=0.5, inner_epochs=2, kl_coef=0.1)
        cfg.optim.lr = 1e-3
        return cfg

    straight = policy(task)
    before = {k: v.clone() for k, v in straight.state_dict().items()}
    records = train(nft_config(tmp_path / "a", 3), straight, task, RewardFetcher(verifier_url), progress=False)
    assert len(records) == 3
    for r in records:
        assert not r["skipped"] and math.isfinite(r["loss"]) and r["clip_fraction"] == 0.0 and r["n_invalid"] == 0
    # the second inner pass already moved away from the base, and is measured against the first pass's velocities
    assert records[0]["kl"] > 0 and records[0]["velocity_max_dev"] > 0
    changed = [k for k, v in straight.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("unet.") for k in changed) and any(k.startswith("lm.") for k in changed)
    interrupted = policy(task)
    train(nft_config(tmp_path / "b", 2), interrupted, task, RewardFetcher(verifier_url), progress=False)
    resumed = policy(task)
    train(nft_config(tmp_path / "b", 3), resumed, task, RewardFetcher(verifier_url), resume=True, progress=False)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("objective", ["flow_grpo", "nft"])
def test_without_context_grad_the_image_loss_leaves_the_lm_alone(verifier_url, tmp_path, objective):
    """grpo.context_grad false (the reference's gradient scope): a text-to-image step trains the image head
    and not the LM, which only the image loss could have reached; with it (the default) the LM moves too."""
    task = ToyTask()
    moved = {}
    for grad in (False, True):
        cfg = config(tmp_path / f"{objective}-{grad}", 1, verifier_url)
        cfg.grpo = GRPOConfig(objective=objective, clip_range=1e-2, context_grad=grad)
        cfg.optim.lr = 1e-3
        model = policy(task)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        (record,) = train(cfg, model, task, RewardFetcher(verifier_url), progress=False)
        assert not record["skipped"]
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        moved[grad] = (any(k.startswith("unet.") for k in changed), any(k.startswith("lm.") for k in changed))
    assert moved == {False: (True, False), True: (True, True)}


def test_nft_with_a_sampling_ema_lags_the_trained_weights_and_resumes_bit_exactly(verifier_url, tmp_path, caplog):
    """grpo.ema_max (DiffusionNFT's soft update): rollouts and v_old come from theta_old, so the first pass of a
    step already sees |v - v_old| > 0 once theta_old lags; the decay follows its schedule; the EMA is
    checkpointed, so a resumed run ends bit-identical in both the weights and theta_old."""
    task = ToyTask()

    def ema_config(run_dir, steps):
        cfg = config(run_dir, steps, verifier_url)
        cfg.grpo = GRPOConfig(objective="nft", nft_timesteps=1, ema_max=0.6, ema_rate=0.5)
        cfg.optim.lr = 1e-3
        return cfg

    straight = policy(task)
    records = train(ema_config(tmp_path / "a", 3), straight, task, RewardFetcher(verifier_url), progress=False)
    assert [r["ema_decay"] for r in records] == [0.0, 0.5, 0.6]
    # step 1 (decay 0) leaves theta_old = theta: its single pass is on-policy; after step 2 theta_old lags
    assert records[0]["velocity_max_dev"] == 0.0 and records[0]["ema_gap"] == 0.0
    assert records[1]["ema_gap"] > 0 and records[2]["velocity_max_dev"] > 0
    interrupted = policy(task)
    train(ema_config(tmp_path / "b", 2), interrupted, task, RewardFetcher(verifier_url), progress=False)
    resumed = policy(task)
    again = train(ema_config(tmp_path / "b", 3), resumed, task, RewardFetcher(verifier_url), resume=True,
                  progress=False)  # fmt: skip
    assert again[-1]["ema_gap"] == records[-1]["ema_gap"] and again[-1]["loss"] == records[-1]["loss"]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    plain_b = config(tmp_path / "b", 4, verifier_url)  # resuming an EMA run without it: allowed, and said
    plain_b.grpo = GRPOConfig(objective="nft", nft_timesteps=1)
    with caplog.at_level("WARNING", logger="trainer.train"):
        train(plain_b, policy(task), task, RewardFetcher(verifier_url), resume=True, progress=False)
    assert any("resuming without one" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="no sampling EMA"):  # a checkpoint saved without one is refused
        plain = config(tmp_path / "c", 1, verifier_url)
        plain.grpo = GRPOConfig(objective="nft", nft_timesteps=1)
        train(plain, policy(task), task, RewardFetcher(verifier_url), progress=False)
        train(ema_config(tmp_path / "c", 2), policy(task), task, RewardFetcher(verifier_url), resume=True,
              progress=False)  # fmt: skip


def test_reasoning_run_trains_plans_and_images(verifier_url, tmp_path):
    """Think, then generate: each sample writes its own plan, the image is drawn from prompt + plan, and one
    advantage trains both (the text ratio == 1 check runs inside); the format rate, plan loss and the plan's KL
    to the loaded base are logged (the text KL alone freezes a reference), and a resumed run is bit-exact too."""
    task = ToyTask(implicit=True)
    model = policy(task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(tmp_path / "reason", 2, verifier_url)
    cfg.reason = ReasonConfig(enabled=True, max_plan_tokens=4, top_p=1.0, text_kl_coef=0.1)
    cfg.optim.lr = 1e-3  # one step moves the plans' log-probs measurably off the reference
    records = train(cfg, model, task, RewardFetcher(verifier_url), progress=False)
    assert len(records) == 2
    for r in records:
        assert not r["skipped"] and 0 <= r["format_rate"] <= 1 and math.isfinite(r["text_loss"])
        assert math.isfinite(r["loss"]) and r["n_invalid"] == 0 and r["text_kl"] >= 0
    assert records[0]["text_kl"] < 1e-6 < records[1]["text_kl"]  # the first step samples from the reference itself
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("unet.") for k in changed) and any(k.startswith("lm.") for k in changed)
    resumed = policy(task)
    short = config(tmp_path / "reason-b", 1, verifier_url)
    short.reason, short.optim = cfg.reason, cfg.optim
    train(short, resumed, task, RewardFetcher(verifier_url), progress=False)
    cfg.run.run_dir = short.run.run_dir
    resumed = policy(task)
    train(cfg, resumed, task, RewardFetcher(verifier_url), resume=True, progress=False)
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


class PromptBlind:
    """A behavioural fake policy: the wrapped model with every context replaced by the one of a fixed prompt,
    so its images depend on the noise alone."""

    def __init__(self, inner, task):
        self.inner = inner
        self.ids, self.mask = task.tokenize(["a red circle"])

    def encode(self, input_ids, attention_mask, image=None):
        b = input_ids.shape[0]
        return self.inner.encode(self.ids.expand(b, -1), self.mask.expand(b, -1))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def refine_policy(task):
    torch.manual_seed(0)
    return TinyUMM(TinyUMMConfig(vocab_size=len(task.tok) + (-len(task.tok)) % 32, pad_token_id=task.tok.pad_token_id,
                                 text_hidden=32, text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32,
                                 attention_head_dim=8, image_patch=8))  # fmt: skip


def test_chunks_whose_rewards_all_failed_are_left_out(verifier_url_no_lexicon, tmp_path):
    """Without the lexicon some implicit prompts decompose only in part; their whole group's rewards are NaN
    (incomplete="fail"), so a chunk may hold no valid sample at all. The step trains on the other chunk and
    counts the failures; it does not average an empty loss."""
    task = ToyTask(implicit=True)
    cfg = config(tmp_path / "partial", 2, verifier_url_no_lexicon)
    cfg.reason = ReasonConfig(enabled=True, max_plan_tokens=4, top_p=1.0)
    records = train(cfg, policy(task), task, RewardFetcher(verifier_url_no_lexicon), progress=False)
    assert len(records) == 2 and any(r["n_invalid"] > 0 for r in records)
    for r in records:
        assert r["skipped"] or math.isfinite(r["loss"])


def test_refinement_and_mixed_rounds(verifier_url, tmp_path):
    """Mixed training: refinement rounds (worst of N initial images, refined G times, rewards rectified)
    interleaved with text-to-image rounds; the edit text and the image head both train, R_init, the number of
    improved refinements and the edits' KL to the loaded base are logged, and rectified rewards never reward a
    failed refinement."""
    task = ToyTask()
    model = refine_policy(task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(tmp_path / "mix", 4, verifier_url)
    cfg.reflect = ReflectConfig(enabled=True, every=2, n_initial=3, max_edit_tokens=4, top_p=1.0,
                                skip_without_improvement=False, text_kl_coef=0.1)  # fmt: skip
    cfg.optim.lr = 1e-3  # the edits' log-probs move measurably off the reference between the two refine rounds
    records = train(cfg, model, task, RewardFetcher(verifier_url), progress=False)
    assert [r["round"] for r in records] == ["refine", "t2i", "refine", "t2i"]
    assert records[0]["text_kl"] < 1e-6 < records[2]["text_kl"]  # the first round samples from the reference
    for r in records:
        assert math.isfinite(r["loss"]) and r["n_invalid"] == 0
        assert ("text_kl" in r) == (r["round"] == "refine")  # t2i rounds write no text
        if r["round"] == "refine":
            assert 0 < r["r_init_mean"] < 1 and 0 <= r["n_improved"] <= 6 and math.isfinite(r["text_loss"])
            # rectified: no refined reward falls below its group's R_init
            assert r["reward_mean"] >= r["r_init_mean"] - 1e-9
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("image_in") for k in changed)  # the LM's view of the image trains (edit and context)


def test_refinement_round_without_improvement_is_skipped(verifier_url, tmp_path):
    """With a margin no refinement can beat (rewards are at most 1), every round is skipped and counted;
    the same margin without rectification trains (the ablation's path)."""
    task = ToyTask()
    model = refine_policy(task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(tmp_path / "skip", 1, verifier_url)
    cfg.reflect = ReflectConfig(enabled=True, n_initial=2, max_edit_tokens=3, margin=1.0)
    (rec,) = train(cfg, model, task, RewardFetcher(verifier_url), progress=False)
    assert rec["skipped"] and rec["n_improved"] == 0 and rec["round"] == "refine"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    cfg = config(tmp_path / "ablation", 1, verifier_url)
    cfg.reflect = ReflectConfig(enabled=True, n_initial=2, max_edit_tokens=3, margin=1.0, rectify=False)
    (rec,) = train(cfg, model, task, RewardFetcher(verifier_url), progress=False)
    assert not rec["skipped"] and rec["n_improved"] == 0


def test_resume_refuses_weights_that_evaluate_differently(verifier_url, tmp_path):
    import json

    task = ToyTask()
    train(config(tmp_path / "r", 1, verifier_url), policy(task), task, RewardFetcher(verifier_url), progress=False)
    state = tmp_path / "r" / "checkpoint" / "state.json"
    raw = json.loads(state.read_text())
    raw["fingerprint"] += 0.01  # what loading into changed model code looks like
    state.write_text(json.dumps(raw))
    with pytest.raises(RuntimeError, match="different model"):
        train(config(tmp_path / "r", 2, verifier_url), policy(task), task, RewardFetcher(verifier_url), resume=True,
              progress=False)  # fmt: skip


def test_config_rejects_impossible_combinations(tmp_path):
    with pytest.raises(ValueError, match="group_size >= 2"):
        RolloutConfig(group_size=1)
    with pytest.raises(ValueError, match="divisible by chunks"):
        RolloutConfig(prompts_per_step=3, chunks=2)
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"rollout": {"groupsize": 4}})
    with pytest.raises(ValueError, match="needs the decomposition"):
        TrainConfig.from_dict({"reward": {"signal": "semantic", "mode": "holistic"}})
    assert TrainConfig.from_dict({"reward": {"signal": "semantic"}}).reward.signal == "semantic"
    with pytest.raises(ValueError, match="edits is reflect.text_kl_coef"):  # plans' KL set where only edits exist
        TrainConfig.from_dict({"reason": {"text_kl_coef": 0.1}, "reflect": {"enabled": True}})
    with pytest.raises(ValueError, match="reflect.text_kl_coef must be >= 0"):
        TrainConfig.from_dict({"reflect": {"text_kl_coef": -0.1}})
    path = tmp_path / "c.yaml"
    path.write_text("rollout: {group_size: 4, window_range: [0, 2]}\nrun: {steps: 5}\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.rollout.group_size == 4 and cfg.rollout.window_range == (0, 2) and cfg.run.steps == 5


def test_shapes_task_logs_oracle_and_verifier_side_by_side(verifier_url, tmp_path):
    from recipes.grpo import ShapesTask

    task = ToyTask()
    model = policy(task).eval()
    shapes = ShapesTask(task.tok, RewardFetcher(verifier_url), tmp_path, eval_prompts=6, n_steps=2)
    out = shapes.evaluate(model, step=3)
    per_category = {k for k in out if k.startswith("acc_")}
    assert set(out) - per_category == {"oracle_accuracy", "oracle_accuracy_stderr", "oracle_atom_accuracy",
                                       "verifier_reward",
                                       "n_prompts"}  # fmt: skip
    assert 0 <= out["oracle_atom_accuracy"] <= 1  # partial credit: the mean share of each prompt's gold atoms that hold
    assert per_category and "acc_implicit" not in per_category  # explicit prompts by default
    assert out["n_prompts"] == 6 and 0 <= out["oracle_accuracy"] <= 1 and 0 < out["verifier_reward"] < 1
    assert (tmp_path / "eval-000003.png").exists()
    # per-image verdicts, so that two evaluations compare pairwise; the same weights compare as no change
    shapes.evaluate(model, step=4)
    rows = (tmp_path / "eval-000003-verdicts.tsv").read_text().splitlines()
    assert rows[0] == "prompt\tcategory\tcorrect\treward\tatom_accuracy" and len(rows) == 7
    from recipes.paired import compare

    same = compare(tmp_path / "eval-000003-verdicts.tsv", tmp_path / "eval-000004-verdicts.tsv")
    assert same["change"] == 0 and same["n"] == 6 and same["before"] == out["oracle_accuracy"]
    assert same["atoms_change"] == 0 and same["atoms_before"] == out["oracle_atom_accuracy"]
    # reasoning: the evaluation plans first (seeded), reports the plans' format rate and writes them down
    reason = ReasonConfig(enabled=True, max_plan_tokens=4)
    thinking = ShapesTask(task.tok, RewardFetcher(verifier_url), tmp_path, eval_prompts=4, n_steps=2,
                          eval_categories=["implicit"], reason=reason)  # fmt: skip
    out = thinking.evaluate(model, step=4)
    assert out["n_prompts"] == 4 and set(k for k in out if k.startswith("acc_")) == {"acc_implicit"}
    assert 0 <= out["format_rate"] <= 1 and 0 <= out["plan_resolution_accuracy"] <= 1
    rows = [r.split("\t") for r in (tmp_path / "eval-000004-plans.tsv").read_text().splitlines()]
    assert len(rows) == 4 and all(r[1].startswith("<think>") and r[2] in ("ok", "wrong") for r in rows)
    assert sum(int(r[3]) for r in rows) / 4 == out["plan_resolution_accuracy"]  # each plan's own verdict
    assert thinking.evaluate(model, step=4) == out  # seeded: the same plans and images
    # planning does not shift the image noise: a policy that ignores its prompt (and so its plan) draws the very
    # same images with and without planning, so reason-vs-baseline evaluations pair image by image
    deaf = PromptBlind(model, task)
    plain = ShapesTask(task.tok, RewardFetcher(verifier_url), tmp_path / "plain", eval_prompts=4, n_steps=2,
                       eval_categories=["implicit"])  # fmt: skip
    thinking.run = tmp_path / "thinking"
    plain.evaluate(deaf, step=0)
    thinking.evaluate(deaf, step=0)
    verdicts = lambda name: (tmp_path / name / "eval-000000-verdicts.tsv").read_text()  # noqa: E731
    assert verdicts("plain") == verdicts("thinking")
    assert (tmp_path / "plain/eval-000000.png").read_bytes() == (tmp_path / "thinking/eval-000000.png").read_bytes()
    # refinement: the evaluation also refines its images once and reports both, with the edits written down
    refiner = refine_policy(task).eval()
    reflecting = ShapesTask(task.tok, RewardFetcher(verifier_url), tmp_path, eval_prompts=4, n_steps=2,
                            reflect=ReflectConfig(enabled=True, max_edit_tokens=3))  # fmt: skip
    out = reflecting.evaluate(refiner, step=5)
    assert 0 <= out["refined_oracle_accuracy"] <= 1 and 0 < out["refined_verifier_reward"] < 1
    assert (tmp_path / "eval-000005-refined.png").exists()
    assert len((tmp_path / "eval-000005-edits.tsv").read_text().splitlines()) == 4
    # the inference-time rule: each row keeps its refined image only where DVReward rose (generate --reflect 1)
    rows = lambda name: [r.split("\t")  # noqa: E731
                         for r in (tmp_path / f"eval-000005{name}-verdicts.tsv").read_text().splitlines()[1:]]
    kept = [b if float(b[3]) > float(a[3]) else a for a, b in zip(rows(""), rows("-refined"))]
    assert rows("-reflect1") == kept
    assert out["reflect1_oracle_accuracy"] == round(sum(int(r[2]) for r in kept) / 4, 4)
    kept = sum(float(b[3]) > float(a[3]) for a, b in zip(rows(""), rows("-refined")))
    assert out["reflect1_kept"] == round(kept / 4, 4)
    with pytest.raises(ValueError, match="unknown prompt categories"):
        ShapesTask(task.tok, RewardFetcher(verifier_url), tmp_path, eval_categories=["implicitt"])
    cfg = TrainConfig.from_yaml("configs/shapes-t2i.yaml")
    assert cfg.rollout.group_size == 8 and cfg.model_path == "models/shapes-umm" and cfg.eval.prompts >= 500
    ablation = TrainConfig.from_yaml("configs/shapes-t2i-holistic.yaml")
    assert ablation.reward.mode == "holistic" and ablation.run.run_dir != cfg.run.run_dir
    # each ablation differs from its main config in one field and the run folder only: the same budget
    assert _blank(cfg, "reward", "mode") == _blank(ablation, "reward", "mode")
    semantic = TrainConfig.from_yaml("configs/shapes-t2i-semantic.yaml")  # trained on the semantic mean alone
    assert semantic.reward.signal == "semantic" and cfg.reward.signal == "reward"
    assert _blank(cfg, "reward", "signal") == _blank(semantic, "reward", "signal")
    assert semantic.run.run_dir not in (cfg.run.run_dir, ablation.run.run_dir)
    # reasoning and its baseline: the same prompts, budget and evaluation; only planning differs
    reason = TrainConfig.from_yaml("configs/shapes-reason.yaml")
    base = TrainConfig.from_yaml("configs/shapes-reason-baseline.yaml")
    assert reason.reason.enabled and not base.reason.enabled and reason.task.eval_categories == ["implicit"]
    assert _blank(reason, "reason", "enabled") == _blank(base, "reason", "enabled")
    assert reason.run.run_dir != base.run.run_dir
    # refinement and its ablation: the same budget; only rectification differs
    reflect = TrainConfig.from_yaml("configs/shapes-reflect.yaml")
    norect = TrainConfig.from_yaml("configs/shapes-reflect-norectify.yaml")
    assert reflect.reflect.enabled and reflect.reflect.rectify and not norect.reflect.rectify
    assert _blank(reflect, "reflect", "rectify") == _blank(norect, "reflect", "rectify")
    assert reflect.run.run_dir != norect.run.run_dir
    from trainer.policies.tiny_umm import TinyUMM

    assert TinyUMM.load(reflect.model_path).cfg.image_patch > 0  # the shipped model they name reads images


def _blank(cfg: TrainConfig, section: str, field: str) -> dict:
    """The config as a dict with ``section.field`` and the run folder blanked: what an ablation must share."""
    d = cfg.to_dict()
    return {**d, section: {**d[section], field: None}, "run": {**d["run"], "run_dir": None}}

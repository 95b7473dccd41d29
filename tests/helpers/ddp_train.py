"""A few GRPO steps under ``torchrun`` (or plain python for one process), for the data-parallel test.

Rewards come from a behavioural stand-in for the verifier: a deterministic function of each image (its
share of reddish pixels) behind the ``RewardFetcher`` interface, so the test isolates the distributed maths
from HTTP batching. Every rank writes its final parameters to ``<out>/rank<r>.safetensors``.

    python -m torch.distributed.run --nproc_per_node 2 tests/helpers/ddp_train.py OUT_DIR [STEPS] [--resume]

It checkpoints after every step, so the fault test can SIGKILL it between or during checkpoints.
"""

import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests.helpers.shapes_task import ToyTask
from trainer.config import GRPOConfig, OptimConfig, RolloutConfig, RunConfig, TrainConfig
from trainer.distributed import init_from_env
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.reward import Rewards
from trainer.train import train


class RednessReward:
    waited_s = 0.0

    def submit(self, texts, images) -> Future:
        f: Future = Future()
        vals = []
        for im in images:
            a = np.asarray(im, dtype=np.float32)
            vals.append(float(((a[..., 0] > a[..., 1] + 20) & (a[..., 0] > a[..., 2] + 20)).mean()))
        f.set_result(Rewards(vals, [None] * len(vals), vals, [float("nan")] * len(vals)))
        return f

    def wait(self, f: Future) -> Rewards:
        return f.result()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist = init_from_env()
    out.mkdir(parents=True, exist_ok=True)
    task = ToyTask(max_tokens=12)
    torch.manual_seed(0)
    model = TinyUMM(TinyUMMConfig(vocab_size=len(task.tok) + (-len(task.tok)) % 32, pad_token_id=task.tok.pad_token_id,
                                  text_hidden=32, text_layers=1, image_size=16, unet_channels=(16, 32), cross_dim=32,
                                  attention_head_dim=8))  # fmt: skip
    if dist.is_main:
        save_file({k: v.clone() for k, v in model.state_dict().items()}, str(out / "init.safetensors"))
    cfg = TrainConfig(
        rollout=RolloutConfig(group_size=3, prompts_per_step=4, chunks=2, n_steps=4, window_len=2, window_range=(0, 1)),
        grpo=GRPOConfig(clip_range=1e-2, std_scope="round"), optim=OptimConfig(lr=1e-3),
        run=RunConfig(steps=int(sys.argv[2]) if len(sys.argv) > 2 else 1, run_dir=str(out / "run"), checkpoint_every=1,
                      eval_every=0),
    )  # fmt: skip
    records = train(cfg, model, task, RednessReward(), resume="--resume" in sys.argv, progress=False)
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(out / f"rank{dist.rank}.safetensors"))
    # the last step's gradient after the all-reduce (and clipping): what the optimizer applied
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, str(out / f"grad{dist.rank}.safetensors"))
    if dist.is_main:
        (out / "rewards.txt").write_text(" ".join(f"{r['reward_mean']:.6f}" for r in records))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Data parallelism for the trainer over ``torch.distributed`` (gloo on CPU, NCCL on GPUs), launched by
``torchrun``.

Each rank samples its share of a step's prompt chunks; rewards are all-gathered so group statistics and the
round's std are those of the global batch; gradients are summed across ranks by an explicit all-reduce
after the step's backward passes, before clipping. This is what ``DistributedDataParallel`` does, done by
hand because one GRPO step calls several policy methods (encode, velocity per trained timestep) and DDP's
hooks fire per ``forward()``. A sharded (FSDP) variant for Bagel-scale models is not implemented yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> Dist:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def all_gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate equally shaped 1-D tensors of every rank, in rank order."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t.contiguous())
        return torch.cat(out)

    def sum_grads(self, params) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def mean(self, values: list[float]) -> list[float]:
        """Average a few floats over ranks (for logging)."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / self.world).tolist()

    def max(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def init_from_env() -> Dist:
    """Join the process group ``torchrun`` describes in the environment (WORLD_SIZE > 1); else one process."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Dist.current()

"""The decomposer backend interface: a batch of prompts in, per prompt questions or a failure out.

Backends never see HTTP types, never raise for one bad prompt (they return an ``ItemFailure`` in its
place), and say with ``complete``/``unparsed`` when they could only decompose part of a prompt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from dvreward.schemas import Question


@dataclass
class BackendOutput:
    questions: list[Question]
    complete: bool = True
    unparsed: list[str] = field(default_factory=list)


@dataclass
class ItemFailure:
    """One prompt could not be decomposed; ``code`` is machine-readable (bad_model_output, timeout...)."""

    code: str
    message: str


class DecomposerBackend(ABC):
    name: str = "abstract"
    model: str = ""
    template_version: str = "0"

    @abstractmethod
    async def decompose_batch(self, prompts: list[str]) -> list[BackendOutput | ItemFailure]:
        """Decompose each prompt; the result list is aligned with ``prompts``."""

    def ready(self) -> bool:
        return True

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass

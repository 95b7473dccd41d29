"""The verifier backend interface: images with their questions in, one ``QuestionScore`` per question out.

``score_batch`` is synchronous (it runs a model) and is called by the batcher on a worker thread with every
item of one dynamic batch. It never raises for one bad question: a question it cannot score is NaN with a
reason; an exception fails the whole batch, and the batcher turns that into per-item errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from dvreward.schemas import QuestionScore


@dataclass
class ScoreItem:
    image: object  # a decoded RGB PIL image
    questions: list[tuple[str, str]]  # (question id, question text)
    image_b64: str = ""  # the original encoding, for backends that send the image on (openai)
    mime: str = "image/png"


class VerifierBackend(ABC):
    name: str = "abstract"
    model: str = ""
    revision: str = ""  # a fingerprint of the loaded weights, where the backend holds them (hf)

    @abstractmethod
    def score_batch(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        """Score every question of every item; the outer list is aligned with ``items``."""

    async def ascore_batch(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        """Async entry point used by the batcher; model backends run ``score_batch`` on a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.score_batch, items)

    def ready(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

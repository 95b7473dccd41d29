"""Wire schemas of DVReward: the one definition that servers and clients import.

Every request and response that crosses HTTP between the decomposer, the verifier, the trainer and
users' own code is defined here, once (pydantic v2, unknown fields rejected). Hard upper bounds live in
``Field`` constraints; services may set lower limits from their settings and report them with the same
``ErrorResponse``. Scores are floats in [0, 1]; a score that could not be computed travels as ``null``
with a ``reason`` (JSON has no NaN), and :func:`QuestionScore.value` turns it back into ``nan``.

Departures from the reference: questions carry ids, parent ids and an optional structured atom (the
reference stores bare strings and drops DSG's dependencies), and the decomposition records the backend,
model and template version that made it, so a cached answer can always be traced.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dvreward.tags import QUALITY_ASPECTS, SEMANTIC_TAGS, AtomCategory, QuestionKind

SCHEMA_VERSION = "1"

# Hard caps of the wire format; each service can lower them through its settings.
MAX_PROMPT_CHARS = 4000
MAX_PROMPTS_PER_REQUEST = 1024
MAX_QUESTIONS = 128
MAX_QUESTION_CHARS = 1000
MAX_ITEMS_PER_REQUEST = 1024
MAX_IMAGE_B64_CHARS = 32 * 1024 * 1024

AggregationMethod = Literal["geometric", "mean", "pooled", "conjunctive"]
NanPolicy = Literal["exclude", "fail"]
IncompletePolicy = Literal["score", "fail"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=True)


class Atom(_Wire):
    """A DSG-style tuple: ``category - detail (args...)``.

    Conventions (what ground truth and coverage checks rely on):
      entity/whole [noun]; count/exactly|fewer_than|at_least [noun, n]; attribute/<color|size|shape|
      texture|material|state|other> [noun, value]; relation/<spatial|action|part> [subject, object,
      predicate]; text/rendered [text]; negation/absent [noun]; global/<style|environment|viewpoint> [value].
    Nouns are singular and lower-case.
    """

    category: AtomCategory
    detail: str = Field(min_length=1, max_length=64)
    args: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=8)

    def key(self) -> tuple[str, ...]:
        """A hashable, order-preserving identity used by coverage checks and de-duplication."""
        return (str(self.category), self.detail, *self.args)

    def __str__(self) -> str:
        return f"{self.category} - {self.detail} ({', '.join(self.args)})"


class Question(_Wire):
    """One atomic yes/no question. "yes" always means the request is satisfied."""

    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    kind: QuestionKind
    tag: str = Field(description="a SemanticTag for semantic questions, a QualityAspect for quality ones")
    parents: list[str] = Field(default_factory=list, max_length=16)
    atom: Atom | None = None

    @model_validator(mode="after")
    def _tag_matches_kind(self) -> Question:
        allowed = SEMANTIC_TAGS if self.kind == QuestionKind.semantic.value else QUALITY_ASPECTS
        if self.tag not in allowed:
            raise ValueError(f"tag {self.tag!r} is not valid for kind {self.kind!r}; expected one of {sorted(allowed)}")
        if self.id in self.parents:
            raise ValueError(f"question {self.id!r} lists itself as a parent")
        return self


def holistic_question(prompt: str) -> Question:
    """The single question of the holistic-reward baseline (the phrase the ShapesWorld verifier learnt)."""
    return Question(id="holistic", text=f"Does the image match: {prompt.strip().rstrip('.?!')}?"[:MAX_QUESTION_CHARS],
                    kind="semantic", tag="holistic")  # fmt: skip


def check_question_graph(questions: list[Question]) -> None:
    """Raise ``ValueError`` if ids repeat, a parent id is unknown, or dependencies form a cycle."""
    ids = [q.id for q in questions]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate question ids: {dup}")
    known = set(ids)
    parents = {q.id: q.parents for q in questions}
    for q in questions:
        missing = [p for p in q.parents if p not in known]
        if missing:
            raise ValueError(f"question {q.id!r} has unknown parents {missing}")
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(node: str) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise ValueError(f"dependency cycle through question {node!r}")
        state[node] = 1
        for p in parents[node]:
            visit(p)
        state[node] = 2

    for q in questions:
        visit(q.id)


class Decomposition(_Wire):
    """A prompt turned into questions, with the provenance needed to trust a cached copy."""

    prompt: str
    questions: list[Question] = Field(max_length=MAX_QUESTIONS)
    backend: str
    model: str
    template_version: str
    complete: bool = Field(True, description="false when the backend could only parse part of the prompt")
    unparsed: list[str] = Field(default_factory=list, description="spans of the prompt left without questions")

    @model_validator(mode="after")
    def _graph(self) -> Decomposition:
        check_question_graph(self.questions)
        return self

    @property
    def semantic(self) -> list[Question]:
        return [q for q in self.questions if q.kind == QuestionKind.semantic.value]

    @property
    def quality(self) -> list[Question]:
        return [q for q in self.questions if q.kind == QuestionKind.quality.value]


class ItemError(_Wire):
    """Why one item of a batch failed; the other items of the batch are unaffected."""

    code: str = Field(description="machine-readable: backend_unavailable, bad_model_output, timeout, ...")
    message: str


Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


class DecomposeRequest(_Wire):
    prompts: list[Prompt] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)
    schema_version: str = SCHEMA_VERSION

    @field_validator("prompts")
    @classmethod
    def _not_blank(cls, prompts: list[str]) -> list[str]:
        for i, p in enumerate(prompts):
            if not p.strip():
                raise ValueError(f"prompts[{i}] is blank")
        return prompts


class DecomposeResult(_Wire):
    index: int
    decomposition: Decomposition | None = None
    error: ItemError | None = None
    cached: bool = False


class DecomposeResponse(_Wire):
    results: list[DecomposeResult]
    schema_version: str = SCHEMA_VERSION


ImageB64 = Annotated[
    str, Field(min_length=1, max_length=MAX_IMAGE_B64_CHARS, description="base64 PNG/JPEG/WebP, optionally a data URI")
]


class VerifyItem(_Wire):
    image: ImageB64
    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)


class VerifyRequest(_Wire):
    items: list[VerifyItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    schema_version: str = SCHEMA_VERSION


class QuestionScore(_Wire):
    """P(yes) of one question: normalised P_yes / (P_yes + P_no), with the raw masses."""

    id: str
    p_yes: float | None = Field(None, ge=0.0, le=1.0)
    yes_mass: float | None = Field(None, ge=0.0)
    no_mass: float | None = Field(None, ge=0.0)
    reason: str | None = Field(None, description="why p_yes is null (the score is NaN)")

    @property
    def value(self) -> float:
        return math.nan if self.p_yes is None else self.p_yes

    @model_validator(mode="after")
    def _null_has_reason(self) -> QuestionScore:
        if self.p_yes is None and not self.reason:
            raise ValueError("a null p_yes needs a reason")
        return self


class VerifyResult(_Wire):
    index: int
    scores: list[QuestionScore] = Field(default_factory=list)
    error: ItemError | None = None


class VerifyResponse(_Wire):
    results: list[VerifyResult]
    model: str = ""
    schema_version: str = SCHEMA_VERSION


class RewardItem(_Wire):
    prompt: Prompt
    image: ImageB64
    questions: list[Question] | None = Field(None, max_length=MAX_QUESTIONS)


class RewardRequest(_Wire):
    items: list[RewardItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    aggregation: AggregationMethod = "geometric"
    nan_policy: NanPolicy = "exclude"
    gating: bool = Field(False, description="soft dependency gating: child score x parent's P(yes)")
    incomplete: IncompletePolicy = Field(
        "score", description="what to do when the decomposer could only parse part of a prompt: 'score' it and say "
        "so (complete=false, unparsed), or 'fail' it (reward null with the reason), which a trainer excludes like NaN")
    schema_version: str = SCHEMA_VERSION


class RewardResult(_Wire):
    index: int
    reward: float | None = None
    semantic: float | None = None
    quality: float | None = None
    reason: str | None = Field(None, description="why reward is null")
    scores: list[QuestionScore] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
    complete: bool = Field(True, description="false when the decomposer left part of the prompt without questions: "
                           "the reward then judges only what was parsed (supplied questions count as complete)")
    unparsed: list[str] = Field(default_factory=list, description="spans of the prompt left without questions")
    error: ItemError | None = None


class RewardResponse(_Wire):
    results: list[RewardResult]
    aggregation: AggregationMethod
    nan_policy: NanPolicy
    schema_version: str = SCHEMA_VERSION


class ErrorDetail(_Wire):
    type: str = Field(description="validation_error, limit_exceeded, unauthorized, backend_unavailable, ...")
    message: str
    field: str | None = Field(None, description="dotted path of the offending field, if any")
    limit: int | float | None = Field(None, description="the limit that was exceeded, if any")


class ErrorResponse(_Wire):
    """The one error body every service returns for every 4xx and 5xx."""

    error: ErrorDetail
    schema_version: str = SCHEMA_VERSION


class HealthResponse(_Wire):
    status: Literal["ok", "loading", "dead"]
    backend: str
    model: str = ""
    # what exactly is loaded: for local weights a content hash (sha256 of the weight files, 12 hex digits), so
    # a run's log can name the verifier that rewarded it; empty where the backend cannot know (a remote server)
    revision: str = ""
    detail: str = ""

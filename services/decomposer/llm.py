"""What the LLM backends (``openai``, ``hf``) share: our prompt templates, the JSON schemas they force,
and the parse -> repair -> validate path from an LLM answer to questions.

Parsing is tolerant in steps: strict JSON; else the first balanced JSON object in the text (code fences
and chatter removed) repaired by ``json_repair``; then schema validation with small repairs (unknown parent
positions dropped, blank questions dropped, questions de-duplicated). Each step that fails raises
``BadModelOutput`` with a short ``reason`` label that the backends count in metrics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from dvreward.schemas import Question
from dvreward.tags import QUALITY_ASPECTS, SEMANTIC_TAGS, QualityAspect, QuestionKind, SemanticTag

TEMPLATE_VERSION = "llm-1"
MAX_LLM_QUESTIONS = 32
MAX_LLM_QUESTION_CHARS = 300


def _template(name: str) -> str:
    return resources.files("decomposer").joinpath("prompts", name).read_text()


DECOMPOSE_TEMPLATE = _template("decompose.txt")
VALIDATE_TEMPLATE = _template("validate.txt")

def decomposition_schema(max_semantic: int = MAX_LLM_QUESTIONS, max_quality: int = 8,
                         max_chars: int = MAX_LLM_QUESTION_CHARS) -> dict:
    """The JSON schema an answer must match; parents are 1-based positions (an enum keeps them bounded,
    which also stops a constrained decoder from writing an endless integer)."""
    question = {"type": "string", "minLength": 3, "maxLength": max_chars}
    return {
        "type": "object",
        "properties": {
            "semantic": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_semantic,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": question,
                        "tag": {"type": "string", "enum": sorted(SEMANTIC_TAGS)},
                        "parents": {"type": "array", "items": {"enum": list(range(1, max_semantic + 1))},
                                    "maxItems": 4},
                    },
                    "required": ["question", "tag", "parents"],
                    "additionalProperties": False,
                },
            },
            "quality": {
                "type": "array",
                "maxItems": max_quality,
                "items": {
                    "type": "object",
                    "properties": {"question": question, "aspect": {"type": "string", "enum": sorted(QUALITY_ASPECTS)}},
                    "required": ["question", "aspect"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["semantic", "quality"],
        "additionalProperties": False,
    }


DECOMPOSITION_SCHEMA: dict = decomposition_schema()

VALIDATION_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "verdicts": {
            "type": "array",
            "maxItems": MAX_LLM_QUESTIONS,
            "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "necessary": {"type": "boolean"}},
                "required": ["index", "necessary"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["verdicts"],
    "additionalProperties": False,
}


class BadModelOutput(Exception):
    """The LLM's answer is not a usable decomposition; ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decompose_prompt_text(prompt: str) -> str:
    return DECOMPOSE_TEMPLATE.replace("{prompt}", prompt)


def validate_prompt_text(prompt: str, questions: list[Question]) -> str:
    listing = "\n".join(f"{i}. {q.text}" for i, q in enumerate(questions, 1) if q.kind == "semantic")
    return VALIDATE_TEMPLATE.replace("{prompt}", prompt).replace("{questions}", listing)


_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> dict:
    """Strict JSON, else the first JSON object in the text, repaired. Raises ``BadModelOutput``."""
    text = text.strip()
    try:
        value = json.loads(text)
    except ValueError:
        fenced = _FENCE_RE.search(text)
        candidate = fenced.group(1) if fenced else text
        start = candidate.find("{")
        if start < 0:
            raise BadModelOutput("no_json", f"no JSON object in the answer: {text[:120]!r}") from None
        import json_repair

        value = json_repair.loads(candidate[start:])
    if not isinstance(value, dict):
        raise BadModelOutput("not_object", f"the answer is JSON but not an object: {str(value)[:120]!r}")
    return value


@dataclass
class ParsedDecomposition:
    questions: list[Question]
    repairs: int  # how many small repairs were needed (dropped parents, blanks, duplicates)


def questions_from_json(value: dict) -> ParsedDecomposition:
    """Validate the ``DECOMPOSITION_SCHEMA`` shape into ``Question``s, repairing small defects."""
    sem, qual = value.get("semantic"), value.get("quality", [])
    if not isinstance(sem, list) or not sem:
        raise BadModelOutput("no_semantic", "the answer has no 'semantic' question list")
    if not isinstance(qual, list):
        qual = []
    repairs = 0
    seen: set[str] = set()
    kept: list[tuple[int, dict]] = []  # (original 1-based position, item)
    for pos, item in enumerate(sem[:MAX_LLM_QUESTIONS], 1):
        text = str(item.get("question", "")).strip() if isinstance(item, dict) else ""
        if not text or text.lower() in seen or item.get("tag") not in SEMANTIC_TAGS:
            repairs += 1
            continue
        seen.add(text.lower())
        kept.append((pos, item))
    if not kept:
        raise BadModelOutput("no_valid_semantic", "no semantic question survived validation")
    new_id = {pos: f"s{i}" for i, (pos, _) in enumerate(kept, 1)}
    questions: list[Question] = []
    for pos, item in kept:
        parents = []
        for p in item.get("parents") or []:
            if isinstance(p, int) and p in new_id and p < pos and new_id[p] not in parents:
                parents.append(new_id[p])
            else:
                repairs += 1  # unknown, forward (possible cycle) or duplicate parent
        text = str(item["question"]).strip()[:MAX_LLM_QUESTION_CHARS]
        questions.append(Question(id=new_id[pos], text=text, kind=QuestionKind.semantic, tag=SemanticTag(item["tag"]),
                                  parents=parents))
    qi = 0
    for item in qual[:8]:
        text = str(item.get("question", "")).strip() if isinstance(item, dict) else ""
        if not text or item.get("aspect") not in QUALITY_ASPECTS or text.lower() in seen:
            repairs += 1
            continue
        seen.add(text.lower())
        qi += 1
        questions.append(Question(id=f"q{qi}", text=text[:MAX_LLM_QUESTION_CHARS], kind=QuestionKind.quality,
                                  tag=QualityAspect(item["aspect"])))
    return ParsedDecomposition(questions, repairs)


def apply_validation(questions: list[Question], value: dict) -> list[Question]:
    """Drop semantic questions the validator judged unnecessary; children lose the dropped parents.

    A verdict list that does not parse leaves the questions unchanged (validation only filters).
    """
    verdicts = value.get("verdicts")
    if not isinstance(verdicts, list):
        raise BadModelOutput("bad_validation", "validation answer has no 'verdicts' list")
    semantic = [q for q in questions if q.kind == "semantic"]
    drop = {
        semantic[v["index"] - 1].id
        for v in verdicts
        if isinstance(v, dict) and isinstance(v.get("index"), int) and 1 <= v["index"] <= len(semantic)
        and v.get("necessary") is False
    }
    if len(drop) >= len(semantic):  # a validator that rejects everything is itself wrong
        raise BadModelOutput("validation_rejects_all", "validation rejected every semantic question")
    out = []
    for q in questions:
        if q.id in drop:
            continue
        out.append(q.model_copy(update={"parents": [p for p in q.parents if p not in drop]}))
    return out

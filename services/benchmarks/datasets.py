"""Public prompt sets with gold structure, shipped under ``benchmarks/data`` with their licenses.

* GenEval (553 prompts): gold atoms from ``include``/``exclude`` -> presence, exact count, "not N+1",
  colour, relative position. ``geneval_gold_atoms`` turns one row into atom keys in our ``Atom`` style.
* DSG-1k: 1,060 prompts with 8,182 gold questions (LLM-made, some noise).
* T2I-CompBench validation prompts (8 categories x 300).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dvreward.schemas import Question

DATA = Path(__file__).parent / "data"


def load_geneval() -> list[dict]:
    with open(DATA / "geneval" / "evaluation_metadata.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def geneval_gold_atoms(row: dict, singular) -> list[tuple[str, ...]]:
    """Gold atom keys of one GenEval row; ``singular`` normalises a class name (same as the parser's)."""
    atoms: list[tuple[str, ...]] = []
    include = row["include"]
    names = [singular(obj["class"]) for obj in include]
    for name, obj in zip(names, include):
        atoms.append(("entity", "whole", name))
        if obj.get("count", 1) > 1:
            atoms.append(("count", "exactly", name, str(obj["count"])))
        if "color" in obj:
            atoms.append(("attribute", "color", name, obj["color"]))
        if "position" in obj:
            relation, ref = obj["position"]
            atoms.append(("relation", "spatial", name, names[ref], relation))
    for obj in row.get("exclude", []):
        atoms.append(("count", "fewer_than", singular(obj["class"]), str(obj["count"])))
    return atoms


def covered_atoms(questions: list[Question]) -> set[tuple[str, ...]]:
    return {q.atom.key() for q in questions if q.atom is not None}


@dataclass
class DSGItem:
    item_id: str
    prompt: str
    questions: list[str]


def load_dsg1k() -> list[DSGItem]:
    by_id: dict[str, DSGItem] = {}
    qs: dict[str, list[str]] = defaultdict(list)
    with open(DATA / "dsg" / "dsg-1k-anns.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_id.setdefault(row["item_id"], DSGItem(row["item_id"], row["text"], []))
            qs[row["item_id"]].append(row["question_natural_language"])
    for k, item in by_id.items():
        item.questions = qs[k]
    return list(by_id.values())


def load_compbench() -> dict[str, list[str]]:
    out = {}
    for path in sorted((DATA / "t2i_compbench").glob("*_val.txt")):
        out[path.stem.removesuffix("_val")] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return out

"""The ``rules`` backend: the embedded default, no model. Scene graph -> DSG-style questions.

Semantic questions, one atom each, with dependencies: existence of every entity (root), then its exact
count and "fewer than N+1" (GenEval's exclusion), attributes, relations (children of both entities),
actions, rendered text, negations, style / viewpoint / environment. Quality questions are a standard
set chosen by what the scene contains (text -> legibility, living things -> anatomy, support relations
-> physics). Every question is phrased so that "yes" is good.

Departure from the reference: the reference asks an LLM and keeps only "strictly necessary" questions;
this backend is exact for the grammar it knows and says so (``complete=False``) for the rest.
"""

from __future__ import annotations

from decomposer.backends.base import BackendOutput, DecomposerBackend, ItemFailure
from decomposer.grammar import Entity, SceneGraph, parse_prompt, pluralize_noun
from decomposer.lexicon import NUMBER_WORDS, Lexicon
from dvreward.schemas import Atom, Question
from dvreward.tags import AtomCategory, QualityAspect, QuestionKind, SemanticTag

TEMPLATE_VERSION = "rules-1"
_NUMBER_NAMES = {v: k for k, v in NUMBER_WORDS.items()}

_QUALITY_BASE = [
    (QualityAspect.geometry, "Are the shapes and proportions of the objects correct and undistorted?"),
    (QualityAspect.coherence, "Is every object complete, with no broken, fragmented or merged parts?"),
    (QualityAspect.texture, "Are the colours and surfaces clean, without noise or smeared patches?"),
    (QualityAspect.aesthetics, "Is the image sharp and free of blur?"),
]
_QUALITY_TEXT = (QualityAspect.legibility, "Is the text in the image clearly legible and correctly spelled?")
_QUALITY_ANATOMY = (
    QualityAspect.anatomy,
    "Do the people and animals have natural anatomy, without missing, extra or deformed limbs?",
)
_QUALITY_PHYSICS = (
    QualityAspect.physics,
    "Is the scene physically plausible, with objects resting on their supports rather than floating?",
)
_SUPPORT_PREDICATES = {"on", "in"}


def number_name(n: int) -> str:
    return _NUMBER_NAMES.get(n, str(n))


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" and not noun.startswith(("uni", "use", "one")) else "a"


class _Builder:
    def __init__(self, lex: Lexicon):
        self.lex = lex
        self.questions: list[Question] = []

    def add(self, text: str, tag: SemanticTag, atom: Atom | None, parents: list[str]) -> str:
        qid = f"s{sum(q.kind == 'semantic' for q in self.questions) + 1}"
        self.questions.append(Question(id=qid, text=text, kind=QuestionKind.semantic, tag=tag, parents=parents,
                                       atom=atom))
        return qid

    def add_quality(self, aspect: QualityAspect, text: str) -> None:
        qid = f"q{sum(q.kind == 'quality' for q in self.questions) + 1}"
        self.questions.append(Question(id=qid, text=text, kind=QuestionKind.quality, tag=aspect))

    def plural(self, e: Entity) -> str:
        return pluralize_noun(e.noun, self.lex)

    def the(self, e: Entity) -> str:
        """"the cup" / "the cups": how later questions refer to an entity."""
        return f"the {self.plural(e)}" if e.plural else f"the {e.noun}"

    def entity(self, e: Entity) -> str:
        atom = Atom(category=AtomCategory.entity, detail="whole", args=[e.noun])
        text = f"Are there {self.plural(e)}?" if e.plural else f"Is there {_article(e.noun)} {e.noun}?"
        root = self.add(text, SemanticTag.existence, atom, [])
        if e.count and e.count > 1:
            plural = self.plural(e)
            self.add(f"Are there exactly {number_name(e.count)} {plural}?", SemanticTag.count,
                     Atom(category=AtomCategory.count, detail="exactly", args=[e.noun, str(e.count)]),
                     [root])  # fmt: skip
            self.add(f"Are there fewer than {number_name(e.count + 1)} {plural}?", SemanticTag.count,
                     Atom(category=AtomCategory.count, detail="fewer_than", args=[e.noun, str(e.count + 1)]),
                     [root])  # fmt: skip
        verb = "Are" if e.plural else "Is"
        for detail, value in e.attributes:
            atom = Atom(category=AtomCategory.attribute, detail=detail, args=[e.noun, value])
            self.add(f"{verb} {self.the(e)} {value}?", SemanticTag.attribute, atom, [root])
        return root


def questions_from_graph(graph: SceneGraph, lex: Lexicon) -> list[Question]:
    b = _Builder(lex)
    roots = [b.entity(e) for e in graph.entities]
    for r in graph.relations:
        s, o = graph.entities[r.subject], graph.entities[r.object]
        atom = Atom(category=AtomCategory.relation, detail=r.detail, args=[s.noun, o.noun, r.predicate])
        verb = "Are" if s.plural else "Is"
        if r.detail == "spatial":
            pred = {"left of": "to the left of", "right of": "to the right of"}.get(r.predicate, r.predicate)
            text, tag = f"{verb} {b.the(s)} {pred} {b.the(o)}?", SemanticTag.spatial
        elif r.detail == "action":
            text, tag = f"{verb} {b.the(s)} {r.predicate} {b.the(o)}?", SemanticTag.action
        else:
            has = "Do" if s.plural else "Does"
            part = b.plural(o) if o.plural else _article(o.noun) + " " + o.noun
            text, tag = f"{has} {b.the(s)} have {part}?", SemanticTag.attribute
        b.add(text, tag, atom, [roots[r.subject], roots[r.object]])
    for idx, verb_ing in graph.actions:
        e = graph.entities[idx]
        atom = Atom(category=AtomCategory.attribute, detail="state", args=[e.noun, verb_ing])
        b.add(f"{'Are' if e.plural else 'Is'} {b.the(e)} {verb_ing}?", SemanticTag.action, atom, [roots[idx]])
    for text, idx in graph.texts:
        atom = Atom(category=AtomCategory.text, detail="rendered", args=[text])
        parents = [roots[idx]] if idx is not None else []
        where = f" on {b.the(graph.entities[idx])}" if idx is not None else ""
        b.add(f'Does the image show the text "{text}"{where}?', SemanticTag.text, atom, parents)
    for e in graph.negated:
        atom = Atom(category=AtomCategory.negation, detail="absent", args=[e.noun])
        b.add(f"Is the image free of any {pluralize_noun(e.noun, lex)}?", SemanticTag.negative, atom, [])
    for kind, value in graph.globals:
        atom = Atom(category=AtomCategory.global_, detail=kind, args=[value])
        text = {
            "style": (f"Is the image in the style of {_article(value)} {value}?" if len(value.split()) <= 2
                      else f"Is the image in the style of {value}?"),
            "viewpoint": f"Is the scene shown {value}?" if value.startswith("from") else f"Is the image a {value}?",
            "environment": f"Is the scene {value}?",
        }[kind]
        b.add(text, SemanticTag(kind), atom, [])
    for aspect, text in _quality_questions(graph, lex):
        b.add_quality(aspect, text)
    return b.questions


def _quality_questions(graph: SceneGraph, lex: Lexicon) -> list[tuple[QualityAspect, str]]:
    out = list(_QUALITY_BASE)
    if graph.texts:
        out.append(_QUALITY_TEXT)
    animate = set(lex.animate)
    if any(e.noun in animate or e.noun.split()[-1] in animate for e in graph.entities):
        out.append(_QUALITY_ANATOMY)
    if any(r.detail == "spatial" and r.predicate in _SUPPORT_PREDICATES for r in graph.relations):
        out.append(_QUALITY_PHYSICS)
    return out


class RulesBackend(DecomposerBackend):
    name = "rules"
    template_version = TEMPLATE_VERSION

    def __init__(self, lexicon: Lexicon | None = None):
        self.lexicon = lexicon or Lexicon()
        self.model = f"rules-lexicon-{self.lexicon.fingerprint()}"

    @classmethod
    def from_settings(cls, settings) -> RulesBackend:
        return cls(Lexicon.load(settings.rules_lexicon))

    def decompose_one(self, prompt: str) -> BackendOutput | ItemFailure:
        graph = parse_prompt(prompt, self.lexicon)
        questions = questions_from_graph(graph, self.lexicon)
        complete = not graph.unparsed and bool(graph.entities or graph.negated or graph.texts)
        unparsed = list(graph.unparsed) or ([] if complete else [prompt])
        return BackendOutput(questions, complete, unparsed)

    async def decompose_batch(self, prompts: list[str]) -> list[BackendOutput | ItemFailure]:
        return [self.decompose_one(p) for p in prompts]

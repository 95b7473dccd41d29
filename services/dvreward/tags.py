"""The DVReward vocabulary: question kinds, semantic tags, quality aspects and atom categories.

Semantic tags and quality aspects follow the reference decomposer (section 2.1 of the reference spec):
ten semantic tags and eight quality aspects, plus ``holistic`` for the single
"Does the image match: <prompt>?" question of the holistic-reward baseline. One convention holds for *every* question,
semantic or quality: it is phrased so that "yes" means the image satisfies the request ("Are there fewer than
three clocks?", "Is the image free of dogs?", "Is the image sharp and free of blur?"), so P(yes) is
always a score and aggregation never has to flip a sign.
"""

from __future__ import annotations

from enum import Enum


class QuestionKind(str, Enum):
    semantic = "semantic"
    quality = "quality"


class SemanticTag(str, Enum):
    existence = "existence"
    count = "count"
    attribute = "attribute"
    spatial = "spatial"
    action = "action"
    text = "text"
    style = "style"
    environment = "environment"
    viewpoint = "viewpoint"
    negative = "negative"
    holistic = "holistic"  # one question about the whole prompt: the holistic-reward baseline, not a decomposition


class QualityAspect(str, Enum):
    geometry = "geometry"
    anatomy = "anatomy"
    texture = "texture"
    coherence = "coherence"
    lighting = "lighting"
    physics = "physics"
    legibility = "legibility"
    aesthetics = "aesthetics"


class AtomCategory(str, Enum):
    """DSG-style tuple categories (``entity - whole (cat)``, ``attribute - color (cat, red)`` ...)."""

    entity = "entity"
    attribute = "attribute"
    relation = "relation"
    count = "count"
    text = "text"
    negation = "negation"
    global_ = "global"


SEMANTIC_TAGS = frozenset(t.value for t in SemanticTag)
QUALITY_ASPECTS = frozenset(a.value for a in QualityAspect)

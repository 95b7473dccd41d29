"""DVReward: the contract shared by every part of alphagrpo (wire schemas, aggregation, HTTP client).

Importable without torch or FastAPI. Servers and clients import the same models from
``dvreward.schemas``; ``dvreward.aggregation`` holds the reward maths; ``dvreward.client`` the SDK.
"""

from dvreward.aggregation import Aggregate, aggregate
from dvreward.schemas import SCHEMA_VERSION, Atom, Decomposition, Question
from dvreward.tags import QualityAspect, QuestionKind, SemanticTag

__all__ = [
    "SCHEMA_VERSION",
    "Aggregate",
    "Atom",
    "Decomposition",
    "QualityAspect",
    "Question",
    "QuestionKind",
    "SemanticTag",
    "aggregate",
]

import math

import pytest
from pydantic import ValidationError

from dvreward.schemas import (
    Atom,
    DecomposeRequest,
    Decomposition,
    ErrorResponse,
    Question,
    QuestionScore,
    RewardRequest,
    check_question_graph,
)


def q(id_, kind="semantic", tag="existence", parents=()):
    return Question(id=id_, text=f"question {id_}?", kind=kind, tag=tag, parents=list(parents))


def test_question_round_trip_and_atom_key():
    atom = Atom(category="attribute", detail="color", args=["apple", "red"])
    question = Question(id="s2", text="Is the apple red?", kind="semantic", tag="attribute", parents=["s1"], atom=atom)
    again = Question.model_validate_json(question.model_dump_json())
    assert again == question
    assert again.atom.key() == ("attribute", "color", "apple", "red")
    assert str(again.atom) == "attribute - color (apple, red)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "semantic", "tag": "geometry"}, "not valid for kind 'semantic'"),
        ({"kind": "quality", "tag": "count"}, "not valid for kind 'quality'"),
        ({"kind": "semantic", "tag": "count", "parents": ["s1"], "id": "s1"}, "lists itself"),
        ({"kind": "semantic", "tag": "count", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_question_rejects(kwargs, message):
    base = {"id": "s1", "text": "Is it?", **kwargs}
    with pytest.raises(ValidationError, match=message):
        Question(**base)


def test_graph_checks_duplicates_unknown_parents_and_cycles():
    with pytest.raises(ValueError, match="duplicate"):
        check_question_graph([q("s1"), q("s1")])
    with pytest.raises(ValueError, match="unknown parents"):
        check_question_graph([q("s1", parents=["s9"])])
    with pytest.raises(ValueError, match="cycle"):
        check_question_graph([q("s1", parents=["s2"]), q("s2", parents=["s1"])])
    check_question_graph([q("s1"), q("s2", parents=["s1"]), q("s3", parents=["s1", "s2"])])


def test_decomposition_validates_graph_and_splits_kinds():
    d = Decomposition(prompt="p", questions=[q("s1"), q("q1", "quality", "geometry")], backend="rules",
                      model="m", template_version="t")  # fmt: skip
    assert [x.id for x in d.semantic] == ["s1"] and [x.id for x in d.quality] == ["q1"]
    with pytest.raises(ValidationError, match="unknown parents"):
        Decomposition(prompt="p", questions=[q("s1", parents=["x"])], backend="b", model="m", template_version="t")


def test_decompose_request_limits():
    with pytest.raises(ValidationError, match="at least 1"):
        DecomposeRequest(prompts=[])
    with pytest.raises(ValidationError, match="blank"):
        DecomposeRequest(prompts=["ok", "   "])
    with pytest.raises(ValidationError):
        DecomposeRequest(prompts=["x" * 5000])
    with pytest.raises(ValidationError):
        DecomposeRequest(prompts="not a list")


def test_question_score_nan_travels_as_null_with_reason():
    s = QuestionScore(id="s1", reason="no yes/no token among the top logprobs")
    assert math.isnan(s.value)
    assert '"p_yes":null' in s.model_dump_json()
    with pytest.raises(ValidationError, match="needs a reason"):
        QuestionScore(id="s1")


def test_reward_request_defaults_and_error_shape():
    r = RewardRequest(items=[{"prompt": "a cat", "image": "aGk="}])
    assert (r.aggregation, r.nan_policy, r.gating) == ("geometric", "exclude", False)
    with pytest.raises(ValidationError):
        RewardRequest(items=[{"prompt": "a cat", "image": "aGk="}], aggregation="median")
    e = ErrorResponse.model_validate({"error": {"type": "limit_exceeded", "message": "m", "field": "prompts",
                                                "limit": 3}})
    assert e.error.limit == 3 and e.schema_version == "1"

"""The rules parser: hand-checked decompositions and full GenEval gold-atom coverage."""

import pytest

from benchmarks.datasets import covered_atoms, geneval_gold_atoms, load_geneval
from decomposer.backends.rules import RulesBackend
from decomposer.grammar import pluralize_noun, singularize, singularize_noun
from decomposer.lexicon import Lexicon

LEX = Lexicon()
RULES = RulesBackend()


def semantic(prompt):
    out = RULES.decompose_one(prompt)
    return out, {q.atom.key(): q for q in out.questions if q.atom is not None}


@pytest.mark.parametrize("plural, singular", [("apples", "apple"), ("wine glasses", "wine glass"), ("knives", "knife"),
    ("buses", "bus"), ("tvs", "tv"), ("broccolis", "broccoli"), ("puppies", "puppy"), ("sheep", "sheep"),
    ("benches", "bench"), ("people", "person"), ("glass", "glass"), ("cookies", "cookie")])  # fmt: skip
def test_singular_and_plural(plural, singular):
    assert singularize_noun(plural, LEX) == singular
    if plural not in ("sheep", "glass"):
        assert pluralize_noun(singular, LEX) == plural


def test_counts_colours_and_relation_with_dependencies():
    out, atoms = semantic("a photo of two red apples to the left of a blue cup")
    assert out.complete and out.unparsed == []
    exist = atoms[("entity", "whole", "apple")]
    assert exist.text == "Are there apples?" and exist.parents == []
    exactly = atoms[("count", "exactly", "apple", "2")]
    assert exactly.text == "Are there exactly two apples?" and exactly.parents == [exist.id]
    assert atoms[("count", "fewer_than", "apple", "3")].text == "Are there fewer than three apples?"
    assert atoms[("attribute", "color", "apple", "red")].text == "Are the apples red?"
    rel = atoms[("relation", "spatial", "apple", "cup", "left of")]
    cup = atoms[("entity", "whole", "cup")]
    assert rel.text == "Are the apples to the left of the cup?" and set(rel.parents) == {exist.id, cup.id}
    assert rel.tag == "spatial"


def test_quality_questions_are_standard_and_conditional():
    out, _ = semantic("a photo of a cup")
    aspects = [q.tag for q in out.questions if q.kind == "quality"]
    assert aspects == ["geometry", "coherence", "texture", "aesthetics"]
    out, _ = semantic('a dog holding a sign that says "HELLO"')
    aspects = {q.tag for q in out.questions if q.kind == "quality"}
    assert {"legibility", "anatomy"} <= aspects


def test_text_negation_action_style_viewpoint_environment():
    out, atoms = semantic('a watercolor painting of a man riding a horse without a saddle, at night, from above')
    assert out.complete
    assert ("relation", "action", "man", "horse", "riding") in atoms
    assert atoms[("negation", "absent", "saddle")].text == "Is the image free of any saddles?"
    assert atoms[("global", "style", "watercolor painting")].tag == "style"
    assert atoms[("global", "environment", "at night")].tag == "environment"
    assert atoms[("global", "viewpoint", "from above")].tag == "viewpoint"
    out, atoms = semantic('a neon sign that says "Open 24h" above a door')
    assert atoms[("text", "rendered", "Open 24h")].text == 'Does the image show the text "Open 24h" on the neon sign?'


def test_copula_attributes_and_definite_reference():
    out, atoms = semantic("the apple is red and the cup is blue")
    assert out.complete
    assert ("attribute", "color", "apple", "red") in atoms and ("attribute", "color", "cup", "blue") in atoms
    assert sum(1 for k in atoms if k[0] == "entity") == 2


def test_unparseable_prompt_is_reported_not_invented():
    out = RULES.decompose_one("the woodcarver is creating a sculpture of a bird from a block of wood")
    assert not out.complete and out.unparsed
    atoms = [q.atom.key() for q in out.questions if q.atom]
    assert ("entity", "whole", "woodcarver") in atoms  # what it did understand it keeps
    out = RULES.decompose_one("??")
    assert not out.complete and not [q for q in out.questions if q.kind == "semantic"]


def test_every_yes_means_good():
    out = RULES.decompose_one("a street with no cars and three dogs")
    texts = [q.text for q in out.questions]
    assert "Is the image free of any cars?" in texts and "Are there fewer than four dogs?" in texts


def test_geneval_gold_atom_coverage_is_complete():
    missing = []
    for row in load_geneval():
        out = RULES.decompose_one(row["prompt"])
        have = covered_atoms(out.questions)
        gold = geneval_gold_atoms(row, lambda n: singularize_noun(n.lower(), LEX))
        missing += [(row["prompt"], g) for g in gold if g not in have]
        assert out.complete, row["prompt"]
    assert missing == []


def test_lexicon_extension_from_json(tmp_path):
    path = tmp_path / "lex.json"
    path.write_text(r'{"colours": ["vermilion"], "rewrites": [["(\\w+) the colou?r of grass", "green \\1"],'
                    r'["as many (\\w+) as a triangle has corners", "three \\1"]]}')
    lex = Lexicon.load(path)
    out = RulesBackend(lex).decompose_one("a circle the colour of grass")
    assert ("attribute", "color", "circle", "green") in [q.atom.key() for q in out.questions if q.atom]
    out = RulesBackend(lex).decompose_one("as many stars as a triangle has corners")
    assert ("count", "exactly", "star", "3") in [q.atom.key() for q in out.questions if q.atom]
    out = RulesBackend(lex).decompose_one("a vermilion circle")
    assert ("attribute", "color", "circle", "vermilion") in [q.atom.key() for q in out.questions if q.atom]
    assert RulesBackend(lex).model != RULES.model  # the lexicon is part of the cache key
    bad = tmp_path / "bad.json"
    bad.write_text('{"colors": ["x"]}')
    with pytest.raises(ValueError, match="unknown lexicon keys"):
        Lexicon.load(bad)
    assert singularize("skis", LEX) == "skis"

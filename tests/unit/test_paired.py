"""Paired comparison of two evaluations, on hand-computed verdicts."""

import math

import pytest

from recipes.paired import compare, paired_change


def test_paired_change_by_hand():
    # d = [1, 0, 0, -1, 1]: mean 0.2; var (ddof 1) = (0.64 + 0.04 + 0.04 + 1.44 + 0.64) / 4 = 0.7
    c = paired_change([0, 1, 0, 1, 0], [1, 1, 0, 0, 1])
    assert c["change"] == pytest.approx(0.2) and c["change_stderr"] == pytest.approx(math.sqrt(0.7 / 5))
    assert (c["before"], c["after"], c["turned_right"], c["turned_wrong"]) == (0.4, 0.6, 2, 1)
    with pytest.raises(ValueError):
        paired_change([1], [1, 0])


def test_compare_reads_verdict_files_and_refuses_different_evaluations(tmp_path):
    head = "prompt\tcategory\tcorrect\treward\n"
    a, b, c = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "c.tsv"
    a.write_text(head + "p1\tposition\t0\t0.5\np2\tcolors\t1\t0.9\np3\tposition\t0\tnan\n")
    b.write_text(head + "p1\tposition\t1\t0.7\np2\tcolors\t1\t0.8\np3\tposition\t1\t0.6\n")
    out = compare(a, b)
    assert out["change"] == pytest.approx(2 / 3, abs=1e-4) and out["change_position"] == 1.0 and out["n_position"] == 2
    assert out["verifier_reward_before"] == pytest.approx(0.7) and out["verifier_reward_after"] == pytest.approx(0.75)
    c.write_text(head + "p2\tcolors\t1\t0.9\np1\tposition\t0\t0.5\np3\tposition\t0\t0.1\n")
    with pytest.raises(ValueError, match="same prompts"):
        compare(a, c)


def test_compare_pairs_atom_accuracy_when_both_files_have_it(tmp_path):
    head = "prompt\tcategory\tcorrect\treward\tatom_accuracy\n"
    a, b, old = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "old.tsv"
    a.write_text(head + "p1\tposition\t0\t0.5\t0.5\np2\tcolors\t0\t0.9\t0.25\n")
    b.write_text(head + "p1\tposition\t0\t0.7\t0.75\np2\tcolors\t1\t0.8\t1.0\n")
    out = compare(a, b)  # d = [0.25, 0.75]: mean 0.5, var (ddof 1) 0.125, stderr sqrt(0.125 / 2) = 0.25
    assert (out["atoms_before"], out["atoms_after"], out["atoms_change"], out["atoms_change_stderr"]) == \
        (0.375, 0.875, 0.5, 0.25)
    old.write_text("prompt\tcategory\tcorrect\treward\np1\tposition\t0\t0.5\np2\tcolors\t1\t0.9\n")
    assert "atoms_change" not in compare(old, b) and compare(old, b)["change"] == 0.0


def test_compare_evals_command(tmp_path):
    from typer.testing import CliRunner

    from alphagrpo.cli import app

    head = "prompt\tcategory\tcorrect\treward\n"
    (tmp_path / "a.tsv").write_text(head + "p1\tposition\t0\t0.5\n")
    (tmp_path / "b.tsv").write_text(head + "p1\tposition\t1\t0.7\n")
    out = CliRunner().invoke(app, ["compare-evals", str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv"), "--json"])
    assert out.exit_code == 0 and '"change": 1.0' in out.output.splitlines()[-1]
    missing = CliRunner().invoke(app, ["compare-evals", str(tmp_path / "a.tsv"), str(tmp_path / "none.tsv")])
    assert missing.exit_code == 2


def test_clustered_stderr_by_hand():
    from recipes.paired import clustered_stderr

    # one value per cluster: the plain standard error, var ddof 1 = 0.7 (as above)
    d = [1, 0, 0, -1, 1]
    assert clustered_stderr(d) == pytest.approx(math.sqrt(0.7 / 5))
    assert clustered_stderr(d, ["a", "b", "c", "d", "e"]) == pytest.approx(math.sqrt(0.7 / 5))
    # two images per prompt: cluster means [1, 0, 0.5] (mean 0.5); var ddof 1 = (0.25 + 0.25 + 0) / 2 = 0.25;
    # the standard error of the cluster means is sqrt(0.25 / 3); treating the 6 images as independent would
    # give sqrt(0.3 / 6) (var ddof 1 of [1, 1, 0, 0, 1, 0] = 1.5 / 5), a smaller and wrong figure
    v, g = [1, 1, 0, 0, 1, 0], ["p", "p", "q", "q", "r", "r"]
    assert clustered_stderr(v, g) == pytest.approx(math.sqrt(0.25 / 3))
    assert clustered_stderr([1.0, 0.0], ["p", "p"]) == 0.0  # one cluster: no spread to measure
    with pytest.raises(ValueError):
        clustered_stderr([1.0], ["p", "q"])


def test_compare_clusters_repeated_prompts(tmp_path):
    head = "prompt\tcategory\tcorrect\treward\n"
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    prompts = ["p", "q", "r"] * 2  # two repeats of three prompts, in evaluation order
    a.write_text(head + "".join(f"{p}\timplicit\t0\t0.5\n" for p in prompts))
    b.write_text(head + "".join(f"{p}\timplicit\t{c}\t0.5\n" for p, c in zip(prompts, [1, 0, 1, 1, 0, 0])))
    out = compare(a, b)  # d per prompt: p [1, 1], q [0, 0], r [1, 0]: as in the test above
    assert out["change"] == pytest.approx(0.5) and out["change_stderr"] == pytest.approx(math.sqrt(0.25 / 3), abs=1e-4)
    assert out["n_clusters"] == 3 and out["n"] == 6


def test_plan_resolution_accuracy():
    from recipes.grpo import plan_hits, plan_resolution_accuracy
    from shapesworld.prompts import PromptSpec, Requirement

    r = (Requirement("circle", "red", 3, True),)
    implicit = PromptSpec("a photo of as many red circles as a triangle has corners", "implicit", r,
                          "a photo of three red circles", "number")
    explicit = PromptSpec("a photo of a red circle", "single_object", (Requirement("circle", "red"),))
    plans = ["<think>a photo of three red circles </think>", "<think>a photo of four red circles</think>",
             "<think> a photo of a red circle </think>", "a photo of a red circle"]
    # right, wrong count, right (spacing ignored), right words but no tags (not a plan): 2 of 4
    assert plan_resolution_accuracy(plans, [implicit, implicit, explicit, explicit]) == 0.5
    assert plan_hits(plans, [implicit, implicit, explicit, explicit]) == [True, False, True, False]
    with pytest.raises(ValueError):
        plan_hits(plans, [implicit])
    with pytest.raises(ValueError):
        plan_resolution_accuracy(plans, [implicit])

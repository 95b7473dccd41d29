"""The counting diagnostic's figures on hand-computed cases (``benchmarks.counting``)."""

import math

import pytest
import torch

from benchmarks.counting import Drawn, from_think, slope, summarise, texts_of


def test_slope_by_hand():
    assert slope([2, 3, 4], [2, 3, 4]) == pytest.approx(1.0)  # the count follows the text
    assert slope([2, 3, 4], [5, 5, 5]) == pytest.approx(0.0)  # the text does not move it
    # xs mean 3, ys 4, 5, 9 (mean 6): sum (x - 3)(y - 6) = (-1)(-2) + 0 + (1)(3) = 5 over sum (x - 3)^2 = 2
    assert slope([2, 3, 4], [4, 5, 9]) == pytest.approx(2.5)
    assert math.isnan(slope([3, 3], [1, 2]))


def test_summarise_by_hand():
    rows = [Drawn(2, 2, True), Drawn(2, 4, False), Drawn(3, 3, True), Drawn(3, 5, False), Drawn(3, 4, False)]
    s = summarise(rows)
    assert s["images"] == 5 and s["accuracy"] == 0.4
    two, three = s["by_target"]["2"], s["by_target"]["3"]
    assert two == {"n": 2, "mean_drawn": 3.0, "se": 1.0, "exact": 0.5}  # stdev of (2, 4) is sqrt(2): / sqrt(2) = 1
    assert three["n"] == 3 and three["mean_drawn"] == 4.0 and three["exact"] == pytest.approx(0.3333, abs=1e-4)
    assert three["se"] == pytest.approx(1 / math.sqrt(3), abs=1e-4)  # stdev of (3, 5, 4) is 1
    # xs (2, 2, 3, 3, 3) mean 2.6, ys (2, 4, 3, 5, 4) mean 3.6: sxy = 0.96 - 0.24 - 0.24 + 0.56 + 0.16 = 1.2 and
    # sxx = 2 x 0.36 + 3 x 0.16 = 1.2
    assert s["slope"] == pytest.approx(1.0)


def test_single_target_has_no_slope_and_strict_json():
    s = summarise([Drawn(3, 3, True)])
    assert s["slope"] is None and s["by_target"]["3"]["se"] is None  # None, never NaN, in the JSON


def test_three_texts_of_an_implicit_number_prompt():
    from shapesworld.prompts import all_prompts

    spec = next(p for p in all_prompts() if p.inference == "number" and p.requirements[0].colour == "red")
    t = texts_of(spec)
    n = spec.requirements[0].count
    assert t["implicit"] == spec.text and t["explicit"] == spec.resolved
    assert t["planned"] == f"{spec.text} <think> {spec.resolved} </think>"
    assert {"two": 2, "three": 3, "four": 4}[t["explicit"].split()[3]] == n  # "a photo of three red stars"
    assert t["plan_span"] == t["planned"] and t["plan_only"] == f"<think> {spec.resolved} </think>"


def test_from_think_keeps_the_plan_span():
    ids = torch.tensor([[5, 6, 9, 7, 8, 0], [9, 7, 0, 0, 0, 0], [5, 6, 7, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])  # row 3: the 9 is padding
    kept = from_think(ids, mask, think_id=9)
    assert kept.tolist() == [[0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    assert kept.dtype == mask.dtype

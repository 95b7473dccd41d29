import base64
import io
import math

import pytest
from PIL import Image

from verifier.backends.base import ScoreItem
from verifier.batcher import _Unit, collate
from verifier.images import BadImage, decode_image, encode_png
from verifier.scoring import (
    REASON_NO_MASS,
    REASON_NOT_IN_TOP,
    answer_of,
    score_from_masses,
    score_from_top_logprobs,
)


@pytest.mark.parametrize("token, answer", [("Yes", "yes"), (" yes", "yes"), ("ĠYes", "yes"), ("YES.", "yes"),
    ("▁No", "no"), ("no!", "no"), ("Not", None), ("yess", None), ("", None)])  # fmt: skip
def test_answer_spellings(token, answer):
    assert answer_of(token) == answer


def test_masses_normalise_and_nan_reason():
    s = score_from_masses("s1", 0.3, 0.1)
    assert s.p_yes == pytest.approx(0.75) and s.yes_mass == 0.3 and s.no_mass == 0.1
    empty = score_from_masses("s1", 0.0, 0.0)
    assert empty.p_yes is None and empty.reason == REASON_NO_MASS and math.isnan(empty.value)


def test_top_logprobs_sum_variants_by_hand():
    top = [("Yes", math.log(0.5)), (" yes", math.log(0.1)), ("No", math.log(0.2)), ("Maybe", math.log(0.2))]
    s = score_from_top_logprobs("s1", top)
    assert s.p_yes == pytest.approx(0.6 / 0.8) and s.yes_mass == pytest.approx(0.6)
    none = score_from_top_logprobs("s1", [("Maybe", -0.1), ("The", -3.0)])
    assert none.p_yes is None and none.reason == REASON_NOT_IN_TOP


def unit(n_questions):
    return _Unit(ScoreItem(None, [("q", "t")] * n_questions), future=None)  # type: ignore[arg-type]


def test_collate_respects_both_caps_and_always_takes_one():
    units = [unit(3), unit(3), unit(3), unit(3)]
    batch, rest = collate(units, max_images=3, max_questions=100)
    assert len(batch) == 3 and len(rest) == 1
    batch, rest = collate(units, max_images=10, max_questions=7)
    assert len(batch) == 2 and len(rest) == 2
    batch, rest = collate([unit(50)], max_images=10, max_questions=7)
    assert len(batch) == 1 and rest == []


def png(w=32, h=32, fmt="PNG"):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), "red").save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_decode_accepts_png_jpeg_webp_and_data_uri():
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        img, got = decode_image(png(fmt=fmt), "image", max_pixels=10_000)
        assert img.size == (32, 32) and img.mode == "RGB" and got == mime
    img, _ = decode_image("data:image/png;base64," + png(), "image", max_pixels=10_000)
    assert img.size == (32, 32)
    assert decode_image(encode_png(img), "x", max_pixels=10_000)[0].size == (32, 32)


@pytest.mark.parametrize(
    "data, message, limit",
    [
        ("not base64!!", "not valid base64", None),
        (base64.b64encode(b"hello world").decode(), "not a PNG, JPEG or WebP", None),
        (png(w=200, h=200), "40000 pixels; the limit is 10000", 10_000),
        (png(w=2, h=300), "aspect ratio", 64),
        (png(fmt="GIF"), "format GIF is not accepted", None),
        (base64.b64encode(base64.b64decode(png(w=64, h=64))[:60]).decode(), "could not be decoded", None),
    ],
)
def test_decode_rejects_with_field_and_limit(data, message, limit):
    with pytest.raises(BadImage) as e:
        decode_image(data, "items[3].image", max_pixels=10_000, max_side_ratio=64)
    assert e.value.field == "items[3].image" and message in e.value.message and e.value.limit == limit

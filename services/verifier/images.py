"""Decoding request images safely: base64 (optionally a data URI) of PNG, JPEG or WebP only.

The service never fetches a URL or reads a path: an image is bytes in the request or nothing. The pixel
count is checked from the header *before* decoding (decompression-bomb guard), the format against an
allow-list, and truncated or corrupt files are rejected; each failure is a ``BadImage`` naming the field
and, where there is one, the limit.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_DATA_URI = re.compile(r"^data:image/([a-zA-Z0-9.+-]+);base64,")


class BadImage(ValueError):
    def __init__(self, field: str, message: str, limit: int | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.limit = field, message, limit


def decode_image(data: str, field: str, *, max_pixels: int, max_side_ratio: float = 64.0):
    """Base64 (or data URI) -> (RGB PIL image, its MIME type), or ``BadImage``."""
    m = _DATA_URI.match(data)
    payload = data[m.end() :] if m else data
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage(field, "is not valid base64") from None
    try:
        img = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise BadImage(field, "is not a PNG, JPEG or WebP image") from None
    if img.format not in ALLOWED_FORMATS:
        raise BadImage(field, f"format {img.format} is not accepted; send PNG, JPEG or WebP")
    w, h = img.size
    if w < 1 or h < 1:
        raise BadImage(field, "has no pixels")
    if w * h > max_pixels:
        raise BadImage(field, f"has {w}x{h} = {w * h} pixels; the limit is {max_pixels}", limit=max_pixels)
    if max(w, h) / min(w, h) > max_side_ratio:
        raise BadImage(field, f"aspect ratio {w}x{h} exceeds {max_side_ratio:g}:1", limit=int(max_side_ratio))
    try:
        img.load()  # decodes now: truncated or corrupt data fails here, not inside a batch
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(field, f"could not be decoded ({type(e).__name__}: {e})") from None
    return img.convert("RGB"), ALLOWED_FORMATS[img.format]


def encode_png(img) -> str:
    """RGB PIL image -> base64 PNG (what clients send)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def data_uri(img_b64: str, mime: str) -> str:
    return img_b64 if img_b64.startswith("data:") else f"data:{mime};base64,{img_b64}"

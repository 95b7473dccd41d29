"""A minimal ``Task`` for training tests: training-split explicit ShapesWorld prompts, the UMM tokenizer,
no evaluation (the recipes wire the oracle in)."""

from __future__ import annotations

import random

from recipes.umm import to_images, tokenize, umm_tokenizer
from shapesworld.prompts import prompts


class ToyTask:
    def __init__(self, max_tokens: int = 16):
        self.tok = umm_tokenizer()
        self.specs = [p.text for p in prompts("train") if p.category != "implicit"]
        self.max_tokens = max_tokens

    def train_prompts(self, rng: random.Random, n: int) -> list[str]:
        return rng.sample(self.specs, n)

    def tokenize(self, texts):
        return tokenize(self.tok, texts, self.max_tokens)

    def to_images(self, x):
        return to_images(x)

    def evaluate(self, policy, step):
        return {}

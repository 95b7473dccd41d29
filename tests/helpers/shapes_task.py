"""A minimal ``Task`` for training tests: training-split ShapesWorld prompts, the UMM tokenizer (with the
plan tags, so reasoning runs work too), no evaluation (the recipes wire the oracle in)."""

from __future__ import annotations

import random

from recipes.umm import THINK, to_images, tokenize, tokenize_left, umm_tokenizer
from shapesworld.prompts import prompts


class ToyTask:
    def __init__(self, max_tokens: int = 16, implicit: bool = False):
        self.tok = umm_tokenizer()
        self.specs = [p.text for p in prompts("train") if (p.category == "implicit") == implicit]
        self.max_tokens = max_tokens
        self.think_close_id = self.tok.convert_tokens_to_ids(THINK[1])
        self.pad_id = self.tok.pad_token_id

    def train_prompts(self, rng: random.Random, n: int) -> list[str]:
        return rng.sample(self.specs, n)

    def tokenize(self, texts):
        return tokenize(self.tok, texts, self.max_tokens)

    def plan_prompts(self, texts):
        return tokenize_left(self.tok, [f"{t} {THINK[0]}" for t in texts], self.max_tokens + 1)

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)

    def to_images(self, x):
        return to_images(x)

    def evaluate(self, policy, step):
        return {}

"""A minimal ``Task`` for training tests: training-split ShapesWorld prompts, the UMM tokenizer (with the
plan tags, so reasoning and refinement runs work too), no evaluation (the recipes wire the oracle in)."""

from __future__ import annotations

import random

from recipes.umm import PlanVocab, to_images, tokenize, umm_tokenizer
from shapesworld.prompts import prompts


class ToyTask(PlanVocab):
    def __init__(self, max_tokens: int = 16, implicit: bool = False):
        super().__init__(umm_tokenizer(), max_tokens)
        self.specs = [p.text for p in prompts("train") if (p.category == "implicit") == implicit]

    def train_prompts(self, rng: random.Random, n: int) -> list[str]:
        return rng.sample(self.specs, n)

    def tokenize(self, texts):
        return tokenize(self.tok, texts, self.max_tokens)

    def to_images(self, x):
        return to_images(x)

    def evaluate(self, policy, step):
        return {}

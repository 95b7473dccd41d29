"""Decomposer backends, by name: ``rules`` (embedded default), ``openai`` (any OpenAI-compatible
server), ``hf`` (a local transformers causal LM). Heavy imports happen only when a backend is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decomposer.backends.base import DecomposerBackend
    from decomposer.settings import DecomposerSettings


def build_backend(settings: DecomposerSettings, metrics=None) -> DecomposerBackend:
    if settings.backend == "rules":
        from decomposer.backends.rules import RulesBackend

        return RulesBackend.from_settings(settings)
    if settings.backend == "openai":
        from decomposer.backends.openai import OpenAIBackend

        return OpenAIBackend.from_settings(settings, metrics)
    if settings.backend == "hf":
        from decomposer.backends.hf import HFBackend

        return HFBackend.from_settings(settings, metrics)
    raise ValueError(f"unknown decomposer backend {settings.backend!r}; choose rules, openai or hf")

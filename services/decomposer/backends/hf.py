"""The ``hf`` backend: a local transformers causal LM with the same prompts and parser as ``openai``.

Decoding is greedy and stops as soon as the answer is one complete JSON object. ``hf_constrained``
(default off) forces the answer to match the JSON schema with lm-format-enforcer (whose transformers
integration imports a module that transformers 5 renamed; ``_import_enforcer`` aliases it). Finding: on
our tiny in-domain models the constraint guarantees the shape but degrades the text, because the tokens
the model learned (``?",`` and similar merges across JSON syntax) are not always allowed, pushing it off
its distribution; parse-and-repair on free decoding worked better there. Large models are better served
by vLLM's own guided decoding behind the ``openai`` backend.
Prompts are decoded one at a time on a worker thread (the model is not shared between threads).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import types
from pathlib import Path

from decomposer.backends.base import BackendOutput, DecomposerBackend, ItemFailure
from decomposer.llm import (
    TEMPLATE_VERSION,
    BadModelOutput,
    decompose_prompt_text,
    decomposition_schema,
    extract_json,
    questions_from_json,
)
from decomposer.metrics import DecomposerMetrics

log = logging.getLogger(__name__)


def _import_enforcer():
    """lm-format-enforcer 0.11 imports ``transformers.tokenization_utils.PreTrainedTokenizerBase``, which
    transformers 5 moved to ``tokenization_utils_base``; alias the old module name if it is missing."""
    try:
        from transformers.tokenization_utils import PreTrainedTokenizerBase  # noqa: F401
    except ImportError:
        import transformers.tokenization_utils_base as base

        shim = types.ModuleType("transformers.tokenization_utils")
        shim.PreTrainedTokenizerBase = base.PreTrainedTokenizerBase  # type: ignore[attr-defined]
        sys.modules["transformers.tokenization_utils"] = shim
    from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser
    from lmformatenforcer.integrations.transformers import (
        build_token_enforcer_tokenizer_data,
        build_transformers_prefix_allowed_tokens_fn,
    )

    def parser(schema: dict):
        # one whitespace at a time: a small model otherwise pads JSON with whitespace up to the limit
        return JsonSchemaParser(schema, CharacterLevelParserConfig(max_consecutive_whitespaces=1))

    return parser, build_token_enforcer_tokenizer_data, build_transformers_prefix_allowed_tokens_fn


def json_complete_criteria(tokenizer, prompt_len: int):
    """A StoppingCriteria that stops once the generated text is one complete JSON object."""
    from transformers import StoppingCriteria

    class _JsonComplete(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            text = tokenizer.decode(input_ids[0, prompt_len:], skip_special_tokens=True).strip()
            if not text.endswith("}"):
                return False
            try:
                json.loads(text)
                return True
            except ValueError:
                return False

    return _JsonComplete()


class HFBackend(DecomposerBackend):
    name = "hf"
    template_version = TEMPLATE_VERSION

    def __init__(self, model_path: str, *, max_new_tokens: int = 768, constrained: bool = True, device: str = "cpu",
                 metrics: DecomposerMetrics | None = None, schema: dict | None = None):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.model = Path(model_path).name
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.lm = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
        self.device, self.max_new_tokens, self.constrained = device, max_new_tokens, constrained
        self.metrics = metrics
        self.template_version = f"{TEMPLATE_VERSION}+{'constrained' if constrained else 'free'}"
        self._lock = threading.Lock()
        self._allowed_fn_factory = None
        if constrained:
            parser_cls, tok_data, build_fn = _import_enforcer()
            data = tok_data(self.tokenizer)
            schema = schema or decomposition_schema()
            self._allowed_fn_factory = lambda: build_fn(data, parser_cls(schema))

    @classmethod
    def from_settings(cls, s, metrics: DecomposerMetrics | None = None) -> HFBackend:
        return cls(s.hf_model_path, max_new_tokens=s.hf_max_new_tokens, constrained=s.hf_constrained,
                   device=s.hf_device, metrics=metrics)  # fmt: skip

    def _input_ids(self, prompt: str):
        content = decompose_prompt_text(prompt)
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, return_tensors="pt",
                return_dict=True,
            )["input_ids"]  # fmt: skip
        else:
            ids = self.tokenizer(content, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    def generate(self, prompt: str) -> str:
        from transformers import StoppingCriteriaList

        ids = self._input_ids(prompt)
        kwargs = {}
        if self._allowed_fn_factory is not None:
            kwargs["prefix_allowed_tokens_fn"] = self._allowed_fn_factory()
        stop = StoppingCriteriaList([json_complete_criteria(self.tokenizer, ids.shape[1])])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with self._lock, self.torch.inference_mode():
            out = self.lm.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                   do_sample=False, stopping_criteria=stop, pad_token_id=pad, **kwargs)  # fmt: skip
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    def decompose_one(self, prompt: str) -> BackendOutput | ItemFailure:
        try:
            text = self.generate(prompt)
            return BackendOutput(questions_from_json(extract_json(text)).questions)
        except BadModelOutput as e:
            if self.metrics is not None:
                self.metrics.parse_failures_total.labels(backend=self.name, reason=e.reason).inc()
            return ItemFailure("bad_model_output", f"{e.reason}: {e}")

    async def decompose_batch(self, prompts: list[str]) -> list[BackendOutput | ItemFailure]:
        return [await asyncio.to_thread(self.decompose_one, p) for p in prompts]

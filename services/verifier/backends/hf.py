"""The ``hf`` verifier backend: any transformers image-text-to-text model, one image prefill for all its
questions.

Every question of an image is rendered as [system, user: image then question, assistant turn start].
Those sequences share everything up to the end of the image span, so the backend:
  1. cuts the rendered text right after the last special token the questions share (special tokens are
     atomic in HF tokenizers, so prefix + suffix tokenise exactly like the whole sequence);
  2. runs the prefix (system prompt + image) once per image, batched over images of one size;
  3. scores every (image, question) suffix against the cached keys/values in batched forwards, reading
     the next-token distribution at each suffix's last token (right padding is harmless: causal attention).
With P prefix and q question tokens, 8 questions cost about (P + 8q) instead of 8 (P + q) tokens.
Positions continue from the prefix: plain 1-D positions, or for the Qwen-VL family the 3-D M-RoPE
positions shifted by the prefix's ``rope_deltas``. ``score_separate`` scores one full sequence per
question; the tests check both agree to 1e-4 on several architectures.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from dvreward.schemas import QuestionScore
from verifier.backends.base import ScoreItem, VerifierBackend
from verifier.processors import QWEN_FAMILIES, load_processor, model_type
from verifier.scoring import score_from_masses, yes_no_token_ids

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a strict visual auditor. Look at the image and answer the question about it with a single word, "
    "yes or no. If the thing the question asks about is not in the image, the answer is no."
)


@dataclass
class _Group:
    items: list[int]  # indices into the batch, all with images of one size


def weights_fingerprint(path: Path) -> str:
    """sha256 over the folder's weight files (names and bytes, in name order), 12 hex digits; "" if none."""
    import hashlib

    h, files = hashlib.sha256(), sorted([*path.glob("*.safetensors"), *path.glob("*.bin")])
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12] if files else ""


class HFVerifier(VerifierBackend):
    name = "hf"

    def __init__(self, model_path: str | Path, *, device: str = "cpu", dtype: str = "float32",
                 system_prompt: str | None = None, max_pairs: int = 64, shared_prefix: bool = True):  # fmt: skip
        import torch
        from transformers import AutoModelForImageTextToText

        self.torch = torch
        path = Path(model_path)
        self.model = path.name
        self.revision = weights_fingerprint(path)
        self.family = model_type(path)
        self.processor = load_processor(path)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.lm = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
        card = path / "verifier_card.json"
        self.card = json.loads(card.read_text()) if card.exists() else {}
        # a model trained with its own system prompt says so in its card; an explicit setting wins
        self.device = device
        self.system_prompt = system_prompt or self.card.get("system_prompt") or SYSTEM_PROMPT
        self.max_pairs, self.shared_prefix = max_pairs, shared_prefix
        vocab = self.lm.get_output_embeddings().weight.shape[0]
        yes, no = yes_no_token_ids(self.tokenizer, vocab)
        self.yes_ids, self.no_ids = torch.tensor(yes), torch.tensor(no)
        self._special = sorted({t for t in self.tokenizer.all_special_tokens} | set(self.tokenizer.get_added_vocab()),
                               key=len, reverse=True)  # fmt: skip
        self._lock = threading.Lock()
        self._template = self._cache_template()
        log.info("hf verifier %s (%s, weights %s): %d yes / %d no token ids", self.model, self.family, self.revision,
                 len(yes), len(no))  # fmt: skip

    # ---- text ---------------------------------------------------------------------------------
    _MARK = "QQQ-question-marker-QQQ"

    def _cache_template(self) -> tuple[str, str, int] | None:
        """(text before the question, text after it, cut point) when the chat template inserts the question
        verbatim, so rendering a question is two string joins instead of a Jinja run; else None."""
        before, _, after = self._render_template(self._MARK).partition(self._MARK)
        probe = "Is there a red circle?"
        if not after and not before or self._render_template(probe) != before + probe + after:
            return None
        prefix, _ = self.split([before + probe + after, before + after])
        return before, after, len(prefix)

    def render(self, question: str) -> str:
        if self._template is not None:
            return self._template[0] + question + self._template[1]
        return self._render_template(question)

    def _render_template(self, question: str) -> str:
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        ]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def split(self, texts: list[str]) -> tuple[str, list[str]]:
        """The longest shared prefix that ends with a special token, and each text's remainder."""
        first = texts[0]
        n = len(first)
        for t in texts[1:]:
            n = min(n, len(t))
            n = next((i for i in range(n) if first[i] != t[i]), n)
        common = first[:n]
        cut = max((common.rfind(s) + len(s) for s in self._special if s in common), default=-1)
        if cut <= 0:
            raise ValueError("the rendered questions share no prefix that ends in a special token")
        return first[:cut], [t[cut:] for t in texts]

    # ---- maths ----------------------------------------------------------------------------------
    def _masses(self, logits) -> list[tuple[float, float]]:
        probs = self.torch.softmax(logits.float(), dim=-1)  # (N, V): the full next-token distribution
        yes = probs[:, self.yes_ids].sum(-1)
        no = probs[:, self.no_ids].sum(-1)
        return list(zip(yes.tolist(), no.tolist()))

    def _inputs(self, texts: list[str], images: list) -> dict:
        enc = self.processor(text=texts, images=images, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k != "labels"}

    def score_separate(self, item: ScoreItem) -> list[QuestionScore]:
        """Reference path: one full forward (image + question) per question."""
        out = []
        for qid, text in item.questions:
            enc = self._inputs([self.render(text)], [item.image])
            with self.torch.inference_mode():
                logits = self.lm(**enc, logits_to_keep=1).logits[:, -1]
            (yes, no), = self._masses(logits)
            out.append(score_from_masses(qid, yes, no))
        return out

    def _suffix_forward(self, cache, rows, suffixes: list[list[int]], prefix_len: int, deltas):
        torch = self.torch
        n, width = len(suffixes), max(map(len, suffixes))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s)
        positions = torch.arange(prefix_len, prefix_len + width).unsqueeze(0).expand(n, width)
        if deltas is not None:  # Qwen-VL M-RoPE: text after the image continues at position + rope delta
            positions = (positions + deltas[rows].view(n, 1)).unsqueeze(0).expand(3, n, width)
        from transformers import DynamicCache

        chunk = DynamicCache()
        for layer, (k, v) in enumerate(cache):
            chunk.update(k[rows], v[rows], layer)
        hidden = self.lm.model(input_ids=ids.to(self.device), cache=chunk, position_ids=positions.to(self.device),
                               use_cache=True).last_hidden_state  # fmt: skip
        last = torch.tensor([len(s) - 1 for s in suffixes], device=hidden.device)
        return self.lm.get_output_embeddings()(hidden[torch.arange(n, device=hidden.device), last])

    def score_shared(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        torch = self.torch
        results: list[list[QuestionScore]] = [[] for _ in items]
        groups: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(tuple(it.image.size), []).append(i)
        for idx in groups.values():
            if self._template is not None:  # fast path: the prefix is fixed, suffixes are string joins
                before, after, cut = self._template
                prefix = before[:cut]
                suffix_texts = [before[cut:] + t + after for i in idx for _, t in items[i].questions]
            else:
                rendered = [self.render(t) for i in idx for _, t in items[i].questions]
                prefix, suffix_texts = self.split(rendered + [self.render("")])
                suffix_texts = suffix_texts[:-1]
            enc = self._inputs([prefix] * len(idx), [items[i].image for i in idx])
            with torch.inference_mode():
                out = self.lm(**enc, use_cache=True, logits_to_keep=1)
            cache = [(layer.keys, layer.values) for layer in out.cache.layers]
            deltas = getattr(self.lm.model, "rope_deltas", None) if self.family in QWEN_FAMILIES else None
            deltas = deltas.view(-1).cpu() if deltas is not None else None
            suffix_ids = self.tokenizer(suffix_texts, add_special_tokens=False)["input_ids"] if suffix_texts else []
            pairs = []  # (group row, item index, question id, suffix token ids)
            k = 0
            for row, i in enumerate(idx):
                for qid, _ in items[i].questions:
                    pairs.append((row, i, qid, suffix_ids[k]))
                    k += 1
            for start in range(0, len(pairs), self.max_pairs):
                chunk = pairs[start : start + self.max_pairs]
                rows = torch.tensor([p[0] for p in chunk])
                with torch.inference_mode():
                    logits = self._suffix_forward(cache, rows, [p[3] for p in chunk], enc["input_ids"].shape[1], deltas)
                for (_row, i, qid, _), (yes, no) in zip(chunk, self._masses(logits)):
                    results[i].append(score_from_masses(qid, yes, no))
        return results

    def score_batch(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        with self._lock:
            if self.shared_prefix:
                return self.score_shared(items)
            return [self.score_separate(it) for it in items]

"""A small OpenAI-compatible chat server for tests, backed by a real tiny transformers model.

It does what ``transformers serve`` does not (see shared notes): honours ``response_format``
(``json_schema`` through lm-format-enforcer constrained decoding, ``json_object`` through the same with an
open schema) and returns real per-token ``logprobs`` / ``top_logprobs`` computed from the model's scores.
Every response is validated against the ``openai`` package's own ``ChatCompletion`` type before it is
sent, so what clients see has vLLM's/SGLang's shape. Requests are kept in ``app.state.requests`` so a test
can check what a client sent. Run it with ``serving.launch.ThreadedServer`` on a free loopback port.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ConfigDict
from transformers import AutoModelForCausalLM, AutoTokenizer


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float = 1.0
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None


def _is_vlm(model_path: str) -> bool:
    import json
    from pathlib import Path

    return "vision_config" in json.loads((Path(model_path) / "config.json").read_text())


def _vlm_inputs(processor, messages: list[dict]) -> dict:
    """OpenAI messages with image_url data URIs -> processor inputs (images decoded, never fetched)."""
    from verifier.images import decode_image

    images, converted = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image_url":
                    url = part["image_url"]["url"]
                    if not url.startswith("data:"):
                        raise HTTPException(400, "only data: image URLs are accepted")
                    images.append(decode_image(url, "image_url", max_pixels=4096 * 4096)[0])
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            content = parts
        converted.append({"role": m["role"], "content": content})
    text = processor.apply_chat_template(converted, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[text], images=images or None, return_tensors="pt"))


def create_app(model_path: str, max_top_logprobs: int = 20) -> FastAPI:
    from decomposer.backends.hf import _import_enforcer

    vlm = _is_vlm(model_path)
    if vlm:
        from transformers import AutoModelForImageTextToText

        from verifier.processors import load_processor

        processor = load_processor(model_path)
        tok = processor.tokenizer
        lm = AutoModelForImageTextToText.from_pretrained(model_path).eval()
    else:
        tok = AutoTokenizer.from_pretrained(model_path)
        lm = AutoModelForCausalLM.from_pretrained(model_path).eval()
    parser_cls, tok_data, build_fn = _import_enforcer()
    enforcer_data = tok_data(tok)
    lock = threading.Lock()
    app = FastAPI()
    app.state.requests = []

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_path, "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict:
        app.state.requests.append(req.model_dump())
        if req.top_logprobs is not None and req.top_logprobs > max_top_logprobs:
            raise HTTPException(400, f"top_logprobs must be <= {max_top_logprobs}")
        if vlm:
            inputs = _vlm_inputs(processor, req.messages)
        else:
            inputs = dict(tok.apply_chat_template(req.messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True))  # fmt: skip
        ids = inputs["input_ids"]
        kwargs: dict[str, Any] = {k: v for k, v in inputs.items() if k != "input_ids"}
        fmt = req.response_format or {}
        if fmt.get("type") == "json_schema":
            kwargs["prefix_allowed_tokens_fn"] = build_fn(enforcer_data, parser_cls(fmt["json_schema"]["schema"]))
        elif fmt.get("type") == "json_object":
            kwargs["prefix_allowed_tokens_fn"] = build_fn(enforcer_data, parser_cls(None))
        greedy = req.temperature == 0
        if req.seed is not None:
            torch.manual_seed(req.seed)
        with lock, torch.inference_mode():
            out = lm.generate(ids, max_new_tokens=req.max_tokens or 256,
                              do_sample=not greedy, temperature=None if greedy else req.temperature,
                              return_dict_in_generate=True, output_logits=True, pad_token_id=tok.pad_token_id,
                              **kwargs)  # fmt: skip
        new = out.sequences[0, ids.shape[1] :].tolist()
        finish = "stop" if new and new[-1] == tok.eos_token_id else "length"
        content_ids = new[:-1] if finish == "stop" else new
        message = {"role": "assistant", "content": tok.decode(content_ids, skip_special_tokens=True)}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        if req.logprobs:
            choice["logprobs"] = {"content": _logprobs(tok, out.logits, content_ids, req.top_logprobs or 0)}
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model or model_path, "choices": [choice],
            "usage": {"prompt_tokens": ids.shape[1], "completion_tokens": len(new),
                      "total_tokens": ids.shape[1] + len(new)},
        }  # fmt: skip
        ChatCompletion.model_validate(body)  # the shape clients of vLLM/SGLang expect, or a 500 here
        return body

    return app


def _logprobs(tok, scores, token_ids: list[int], top: int) -> list[dict]:
    """Real log-probs of the raw next-token distribution (before any constraint mask) per emitted token."""
    entries = []
    for step, token_id in enumerate(token_ids):
        logp = torch.log_softmax(scores[step][0].float(), dim=-1)
        tops = torch.topk(logp, top).indices.tolist() if top else []
        piece = tok.decode([token_id])

        def item(t: int, logp: torch.Tensor = logp) -> dict:
            s = tok.decode([t])
            return {"token": s, "logprob": float(logp[t]), "bytes": list(s.encode())}

        entries.append({"token": piece, "logprob": float(logp[token_id]), "bytes": list(piece.encode()),
                        "top_logprobs": [item(t) for t in tops]})  # fmt: skip
    return entries



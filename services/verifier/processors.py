"""Processors (image + text -> model inputs) for the VLM families the ``hf`` verifier serves.

LLaVA and Idefics3 use their real transformers processor classes with the PIL image processors. The
Qwen2-VL / Qwen2.5-VL / Qwen3-VL processors cannot be built without torchvision (their video processor
imports it, see the CPU feasibility notes), so ``QwenVLProcessor`` does their job in a few lines: the real
``Qwen2VLImageProcessorPil`` for pixels and grid, the tokenizer for text, each ``<|image_pad|>`` expanded
to ``prod(grid) / merge**2`` copies, and ``mm_token_type_ids`` (transformers 5 needs it for M-RoPE). On a
machine with torchvision, real checkpoints work the same way through this class.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_FAMILIES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


class QwenVLProcessor:
    image_pad = "<|image_pad|>"

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer
        self.merge = getattr(image_processor, "merge_size", 2)
        self.image_pad_id = tokenizer.convert_tokens_to_ids(self.image_pad)
        self.chat_template = tokenizer.chat_template

    def __call__(self, text: list[str], images: list | None = None, padding: bool = False, return_tensors: str = "pt"):
        import torch
        from transformers import BatchFeature

        data: dict = {}
        grids = []
        if images:
            pix = self.image_processor(images=images, return_tensors="pt")
            data["pixel_values"], data["image_grid_thw"] = pix["pixel_values"], pix["image_grid_thw"]
            grids = [int(g.prod()) // self.merge**2 for g in pix["image_grid_thw"]]
        expanded, i = [], 0
        for t in text:
            parts = t.split(self.image_pad)
            out = parts[0]
            for p in parts[1:]:
                out += "<|placeholder|>" * grids[i] + p
                i += 1
            expanded.append(out.replace("<|placeholder|>", self.image_pad))
        if i != len(grids):
            raise ValueError(f"{len(grids)} images but {i} image placeholders in the text")
        enc = self.tokenizer(expanded, padding=padding, return_tensors=return_tensors, add_special_tokens=False)
        data.update(enc)
        data["mm_token_type_ids"] = (enc["input_ids"] == self.image_pad_id).long()
        return BatchFeature(data=data, tensor_type=None) if return_tensors != "pt" else BatchFeature(
            data={k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for k, v in data.items()}
        )

    def apply_chat_template(self, messages, **kw):
        return self.tokenizer.apply_chat_template(messages, **kw)


def model_type(path: str | Path) -> str:
    return json.loads((Path(path) / "config.json").read_text())["model_type"]


def load_processor(path: str | Path):
    """The processor for a local model folder (no network)."""
    from transformers import AutoTokenizer

    path = Path(path)
    kind = model_type(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pre = json.loads((path / "preprocessor_config.json").read_text())
    pre = {k: v for k, v in pre.items() if k not in ("image_processor_type", "processor_class")}
    if kind in QWEN_FAMILIES:
        from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

        size = {"shortest_edge": pre.pop("min_pixels", 56 * 56), "longest_edge": pre.pop("max_pixels", 28 * 28 * 1280)}
        pre.pop("size", None)
        return QwenVLProcessor(Qwen2VLImageProcessorPil(size=size, **pre), tokenizer)
    if kind == "llava":
        from transformers import LlavaProcessor
        from transformers.models.clip import CLIPImageProcessorPil

        cfg = json.loads((path / "config.json").read_text())
        return LlavaProcessor(image_processor=CLIPImageProcessorPil(**pre), tokenizer=tokenizer,
                              patch_size=cfg["vision_config"]["patch_size"],
                              vision_feature_select_strategy=cfg.get("vision_feature_select_strategy", "default"),
                              num_additional_image_tokens=1, chat_template=tokenizer.chat_template)  # fmt: skip
    if kind in ("idefics3", "smolvlm"):
        from transformers import Idefics3Processor
        from transformers.models.idefics3 import Idefics3ImageProcessorPil

        cfg = json.loads((path / "config.json").read_text())
        vc = cfg["vision_config"]
        seq = (vc["image_size"] // vc["patch_size"]) ** 2 // cfg.get("scale_factor", 2) ** 2
        return Idefics3Processor(image_processor=Idefics3ImageProcessorPil(**pre), tokenizer=tokenizer,
                                 image_seq_len=seq, chat_template=tokenizer.chat_template)  # fmt: skip
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)

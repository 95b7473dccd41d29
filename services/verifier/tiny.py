"""Tiny vision-language model folders built offline from configs (no hub, no download).

``build_tiny_vlm(path, family)`` writes a random-weight model of a real transformers architecture
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA, Idefics3) with an offline byte-level BPE tokenizer whose "Yes"/"No"
are single tokens, a chat template, and the image-processor config, so the folder loads like any local
checkpoint through ``verifier.processors.load_processor`` and ``AutoModelForImageTextToText``. Used by
tests (several architectures), by the benchmarks, and as the starting point the ShapesWorld verifier is
trained from. Random weights give real but uninformative P(yes).
"""

from __future__ import annotations

import json
from pathlib import Path

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "idefics3")

SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", "<image>", "<fake_token_around_image>", "<global-img>",
    "<end_of_utterance>",
]  # fmt: skip

# One template for every family: system, then user content parts (image placeholder before text).
_IMAGE_MARK = {
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "llava": "<image>",
    "idefics3": "<image>",
}


def chat_template(family: str) -> str:
    mark = _IMAGE_MARK[family]
    return (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for part in m['content'] %}"
        "{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}" + mark + "{% endif %}{% endfor %}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def default_corpus() -> list[str]:
    """English of the kind verifier prompts contain, so a question takes about a dozen tokens."""
    lines = [
        "You are a strict visual auditor. Look at the image and answer the question about it with a single word, "
        "yes or no. If the thing the question asks about is not in the image, the answer is no.",
        "Is there a red circle? Are there exactly two blue squares? Are there fewer than three green triangles?",
        "Is the yellow star to the left of the purple circle? Is the orange square to the right of the white star?",
        "Is the large pink circle above the small brown square? Is the gray triangle below the black star?",
        "Are the shapes and proportions of the objects correct and undistorted? Is the image sharp and free of blur?",
        "Is every object complete, with no broken, fragmented or merged parts? Are the colours and surfaces clean, "
        "without noise or smeared patches? Does the image match the prompt? Is there a cat, a dog, a cup, a apple?",
        "Yes No yes no one two three four five six seven eight nine ten picture scene shape shapes object objects",
    ]
    return lines * 8


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus or default_corpus(), trainer)
    tok.add_tokens(["Yes", "No", "yes", "no"])  # single, stable ids for the answer words
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>", unk_token=None)  # fmt: skip


def _vocab(tok) -> int:
    n = len(tok)
    return n + (-n) % 64


def _qwen_config(family: str, tok, hidden: int, layers: int, vision_hidden: int, patch: int):
    from transformers import AutoConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                     "<|vision_end|>")}
    head_dim = hidden // 4
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(vocab_size=_vocab(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id)  # fmt: skip
    if family == "qwen3_vl":
        text["head_dim"] = head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        vision = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, depth=2, num_heads=2,
                      patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden,
                      num_position_embeddings=64, deepstack_visual_indexes=[])  # fmt: skip
    elif family == "qwen2_5_vl":
        vision = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, depth=2, num_heads=2,
                      patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden,
                      window_size=4 * patch, fullatt_block_indexes=[1])  # fmt: skip
    else:
        vision = dict(embed_dim=vision_hidden, hidden_size=hidden, depth=2, num_heads=2, mlp_ratio=2,
                      patch_size=patch, spatial_merge_size=2, temporal_patch_size=2)  # fmt: skip
    cfg = AutoConfig.for_model(family, text_config=text, vision_config=vision,
                               image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                               tie_word_embeddings=True)  # fmt: skip
    return cfg


def build_tiny_vlm(path: str | Path, family: str = "qwen2_vl", *, seed: int = 0, hidden: int = 64, layers: int = 2,
                   vision_hidden: int = 32, image_size: int = 64, patch: int = 8, corpus: list[str] | None = None,
                   min_pixels: int | None = None, max_pixels: int | None = None) -> Path:  # fmt: skip
    """Write a random-weight VLM folder of ``family`` at ``path``; returns the path.

    For the Qwen families ``min_pixels``/``max_pixels`` bound the resized image (default: exactly
    ``image_size`` squared), so the number of image tokens is (image_size / patch / 2) ** 2.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(corpus)
    tok.chat_template = chat_template(family)
    torch.manual_seed(seed)
    if family.startswith("qwen"):
        cfg = _qwen_config(family, tok, hidden, layers, vision_hidden, patch)
        pixels = image_size * image_size
        proc_cfg = {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": patch, "merge_size": 2,
                    "temporal_patch_size": 2, "min_pixels": min_pixels or pixels, "max_pixels": max_pixels or pixels,
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # fmt: skip
        if family == "qwen3_vl":
            proc_cfg["size"] = {"shortest_edge": min_pixels or pixels, "longest_edge": max_pixels or pixels}
    elif family == "llava":
        from transformers import AutoConfig

        vision = dict(model_type="clip_vision_model", hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                      num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=patch)  # fmt: skip
        text = dict(model_type="llama", vocab_size=_vocab(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                    num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=4096, pad_token_id=tok.pad_token_id)  # fmt: skip
        cfg = AutoConfig.for_model("llava", vision_config=vision, text_config=text,
                                   image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                                   vision_feature_select_strategy="full", tie_word_embeddings=True)  # fmt: skip
        proc_cfg = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": image_size},
                    "crop_size": {"height": image_size, "width": image_size}, "do_center_crop": True,
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # fmt: skip
    else:  # idefics3
        from transformers import AutoConfig

        vision = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=2,
                      num_attention_heads=2, image_size=image_size, patch_size=patch)  # fmt: skip
        text = dict(model_type="llama", vocab_size=_vocab(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                    num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=4096, pad_token_id=tok.pad_token_id)  # fmt: skip
        cfg = AutoConfig.for_model("idefics3", vision_config=vision, text_config=text, scale_factor=2,
                                   image_token_id=tok.convert_tokens_to_ids("<image>"),
                                   tie_word_embeddings=True)  # fmt: skip
        proc_cfg = {"image_processor_type": "Idefics3ImageProcessor", "do_image_splitting": False,
                    "size": {"longest_edge": image_size}, "max_image_size": {"longest_edge": image_size},
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # fmt: skip
    model = AutoModelForImageTextToText.from_config(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(proc_cfg, indent=2))
    (path / "verifier_family.json").write_text(json.dumps({"family": family, "image_size": image_size}))
    if not family.startswith("qwen"):  # a real processor config, so AutoProcessor (and `transformers serve`) load it
        from verifier.processors import load_processor

        load_processor(path).save_pretrained(path)
    return path

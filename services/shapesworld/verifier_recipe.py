"""Recipe of the ShapesWorld verifier: a Qwen2-VL trained from scratch on CPU (``alphagrpo shapes
train-verifier``), saved as an ordinary Hugging Face model folder that the verifier service loads.

What makes grounding cheap to learn (the calibration run stayed at chance for 8 minutes without these):
  * patch 8 with 2x2 merge: a 64x64 image is 16 image tokens of 16x16 px, so steps are cheap;
  * a word-level tokenizer over the world's closed vocabulary, and a one-line system prompt (stored in the
    folder's ``verifier_card.json``; the service renders with it), so sequences stay short;
  * loss on the 2-way yes/no decision (log-sum-exp over each answer's spellings, exactly the P(yes) the
    service computes) instead of the full vocabulary;
  * a dense auxiliary loss: a linear head on each merged image token predicts which (colour, shape) objects
    have their centre in its 16x16 cell, so the vision tower learns what is where from the renderer's
    ground truth, not only from one yes/no bit per image;
  * captioning as a second task: a quarter of each batch asks "Describe the image." and is trained with the
    language-model loss on a caption of every object ("large red circle top left , ..."), which forces the
    text model to read the image tokens many bits per image instead of one yes/no bit;
  * a curriculum: existence, colour and quality first, then counts, sizes, relations and holistic questions.
Answers are balanced per exact question string (``questions.py``). With ``init`` the recipe fine-tunes an
existing folder instead (no easy-first curriculum, a fresh auxiliary head), and with ``onpolicy`` a share of
every batch's question rows comes from a generator's oracle-labelled rollouts (``onpolicy.py``; they have no
object map, so the auxiliary loss sees only the synthetic rows). Runs are seeded, resumable
(checkpoint = safetensors weights and optimizer state, JSON for RNG states and step, written atomically;
no pickle) and log JSONL.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from checkpoint import latest as latest_checkpoint
from shapesworld.prompts import all_prompts, prompts
from shapesworld.questions import QUALITY, RELATION_WORDS, SEMANTIC_KINDS, Example, mixed_example
from shapesworld.world import COLOURS, SHAPES, SIZES

SYSTEM_PROMPT = "Answer yes or no."
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>", "<unk>"]  # fmt: skip
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH, MERGE, IMAGE_SIZE = 8, 2, 64
CELLS = IMAGE_SIZE // (PATCH * MERGE)  # 4 x 4 merged image tokens
AUX_CLASSES = [(c, s) for c in COLOURS for s in SHAPES]  # 24 (colour, shape) pairs
CAPTION_QUESTION = "Describe the image."


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, so ``taskset -c 1`` means 1), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def caption(scene) -> str:
    """Every object, left to right: "large red circle top left , small blue star bottom center"."""
    rows, cols = ("top", "middle", "bottom"), ("left", "center", "right")
    parts = [f"{o.size} {o.colour} {o.shape} {rows[min(2, int(o.y * 3))]} {cols[min(2, int(o.x * 3))]}"
             for o in sorted(scene.objects, key=lambda o: (o.x, o.y))]  # fmt: skip
    return " , ".join(parts)


@dataclass
class RecipeConfig:
    seed: int = 0  # everything (init, data, order) derives from it
    minutes: float = 60.0  # training wall-time budget (evaluation excluded)
    max_steps: int = 100_000  # hard cap
    batch: int = 64  # examples per step
    lr: float = 1.5e-3  # peak AdamW learning rate
    warmup: int = 200  # linear warm-up steps
    aux_weight: float = 1.0  # dense (colour, shape)-per-cell loss
    caption_fraction: float = 0.25  # share of each batch spent on captions
    caption_weight: float = 1.0
    easy_fraction: float = 0.12  # first share of the budget on exist/colour/quality only
    text_hidden: int = 128
    text_layers: int = 4
    vision_hidden: int = 96
    vision_depth: int = 2
    eval_every_s: float = 300.0
    eval_size: int = 1200  # fixed validation examples
    checkpoint_every_s: float = 300.0
    init: str | None = None  # fine-tune this verifier folder instead of starting from scratch
    onpolicy: str | None = None  # a label-rollouts folder: its train rollouts join every batch
    onpolicy_fraction: float = 0.5  # share of each batch's answer rows drawn from it


def vocabulary() -> list[str]:
    words: set[str] = set()
    texts = [SYSTEM_PROMPT, *QUALITY.values(), "Does the image match :", "Is there a", "Are there exactly fewer than",
             "Is the Are the", "Yes No yes no", "system user assistant", *RELATION_WORDS.values()]  # fmt: skip
    texts += [p.text for p in all_prompts()] + list(COLOURS) + list(SIZES) + [s + "s" for s in SHAPES]
    texts += ["one two three four five six", CAPTION_QUESTION, "top middle bottom left center right ,"]
    from tokenizers.pre_tokenizers import Whitespace

    pre = Whitespace()
    for t in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(t))
    return sorted(words)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>", unk_token="<unk>")  # fmt: skip
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[4:8]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(cfg: RecipeConfig, tok):
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    head_dim = cfg.text_hidden // 4
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(vocab_size=len(tok) + (-len(tok)) % 32, hidden_size=cfg.text_hidden,
                intermediate_size=3 * cfg.text_hidden,
                num_hidden_layers=cfg.text_layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=512, rope_parameters={"rope_type": "default", "mrope_section": section,
                                                              "rope_theta": 10000.0},
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<pad>"],
                bos_token_id=ids["<|endoftext|>"])  # fmt: skip
    vision = dict(embed_dim=cfg.vision_hidden, hidden_size=cfg.text_hidden, depth=cfg.vision_depth, num_heads=4,
                  mlp_ratio=2, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2)  # fmt: skip
    config = AutoConfig.for_model("qwen2_vl", text_config=text, vision_config=vision,
                                  image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                                  vision_start_token_id=ids["<|vision_start|>"],
                                  vision_end_token_id=ids["<|vision_end|>"],
                                  tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(cfg.seed)
    return Qwen2VLForConditionalGeneration(config)


def preprocessor_config() -> dict:
    pixels = IMAGE_SIZE * IMAGE_SIZE
    return {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": PATCH, "merge_size": MERGE,
            "temporal_patch_size": 2, "min_pixels": pixels, "max_pixels": pixels,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # fmt: skip


class Encoder:
    """Examples -> model inputs, exactly as the verifier service builds them (chat template, image-pad
    expansion, ``mm_token_type_ids``), but without importing the service. A test checks the two agree."""

    def __init__(self, tok):
        from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

        pre = preprocessor_config()
        self.image_processor = Qwen2VLImageProcessorPil(
            size={"shortest_edge": pre["min_pixels"], "longest_edge": pre["max_pixels"]}, patch_size=PATCH,
            merge_size=MERGE, temporal_patch_size=2, image_mean=pre["image_mean"], image_std=pre["image_std"],
        )  # fmt: skip
        self.tok = tok
        self.pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self.n_image_tokens = CELLS * CELLS
        yes = [tok.convert_tokens_to_ids(w) for w in ("Yes", "yes")]
        no = [tok.convert_tokens_to_ids(w) for w in ("No", "no")]
        self.yes_ids, self.no_ids = torch.tensor(yes), torch.tensor(no)

    def text(self, question: str) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]  # fmt: skip
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text.replace("<|image_pad|>", "<|image_pad|>" * self.n_image_tokens)

    def __call__(self, batch: list[Example]) -> dict:
        pix = self.image_processor(images=[e.image for e in batch], return_tensors="pt")
        enc = self.tok([self.text(e.question) for e in batch], padding=True, return_tensors="pt",
                       add_special_tokens=False)
        ids = enc["input_ids"]
        return {
            "input_ids": ids, "attention_mask": enc["attention_mask"], "pixel_values": pix["pixel_values"],
            "image_grid_thw": pix["image_grid_thw"], "mm_token_type_ids": (ids == self.pad_id).long(),
            "last": enc["attention_mask"].sum(1) - 1,
            "answer": torch.tensor([1.0 if e.answer else 0.0 for e in batch]),
        }  # fmt: skip


def caption_inputs(encoder: Encoder, batch: list[Example]) -> dict:
    """Teacher-forced captioning sequences: labels only on the caption and its end-of-turn token."""
    tok = encoder.tok
    pix = encoder.image_processor(images=[e.image for e in batch], return_tensors="pt")
    prompts_ = [tok(encoder.text(CAPTION_QUESTION), add_special_tokens=False)["input_ids"] for _ in batch]
    answers = [tok(caption(e.scene) + " <|im_end|>", add_special_tokens=False)["input_ids"] for e in batch]
    width = max(len(p) + len(a) for p, a in zip(prompts_, answers))
    ids = torch.full((len(batch), width), tok.pad_token_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts_, answers)):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[i, : len(p) + len(a)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": pix["pixel_values"],
            "image_grid_thw": pix["image_grid_thw"], "mm_token_type_ids": (ids == encoder.pad_id).long()}  # fmt: skip


def aux_targets(batch: list[Example]) -> torch.Tensor:
    """(B * 16, 24) multi-hot: which (colour, shape) objects have their centre in each 16x16 cell."""
    out = torch.zeros(len(batch), CELLS, CELLS, len(AUX_CLASSES))
    index = {k: i for i, k in enumerate(AUX_CLASSES)}
    for b, e in enumerate(batch):
        for o in e.scene.objects if e.scene else []:
            r, c = min(CELLS - 1, int(o.y * CELLS)), min(CELLS - 1, int(o.x * CELLS))
            out[b, r, c, index[(o.colour, o.shape)]] = 1.0
    return out.view(-1, len(AUX_CLASSES))


def yes_no_logit(model, enc: dict, encoder: Encoder, capture: dict | None = None) -> torch.Tensor:
    """log P(yes-spellings) - log P(no-spellings) at each sequence's last token, (B,)."""
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")}
    hidden = model.model(**inputs).last_hidden_state
    h = hidden[torch.arange(hidden.shape[0]), enc["last"]]
    logits = model.get_output_embeddings()(h).float()
    return torch.logsumexp(logits[:, encoder.yes_ids], -1) - torch.logsumexp(logits[:, encoder.no_ids], -1)


def weights_at(progress: float, cfg: RecipeConfig) -> dict[str, float]:
    if progress < cfg.easy_fraction:
        return {"exist": 2.0, "colour": 2.0, "quality": 1.0, "size": 0.5}
    w = {k: 1.0 for k in SEMANTIC_KINDS}
    w.update(count=1.5, fewer=1.0, spatial=1.5, quality=1.0, holistic=1.5)
    return w


def evaluate_model(model, encoder: Encoder, examples: list[Example], batch: int = 128) -> dict:
    model.eval()
    correct: dict[str, list[bool]] = {}
    with torch.inference_mode():
        for i in range(0, len(examples), batch):
            chunk = examples[i : i + batch]
            z = yes_no_logit(model, encoder(chunk), encoder)
            for e, zi in zip(chunk, z.tolist()):
                correct.setdefault(e.kind, []).append((zi > 0) == e.answer)
    model.train()
    out = {k: sum(v) / len(v) for k, v in sorted(correct.items())}
    sem = [x for k, v in correct.items() if k in SEMANTIC_KINDS for x in v]
    out["semantic"] = sum(sem) / len(sem)
    return out


def validation_set(cfg: RecipeConfig) -> list[Example]:
    rng = random.Random(10_000 + cfg.seed)
    specs = prompts("val")
    w = weights_at(1.0, cfg)
    return [mixed_example(rng, specs, w) for _ in range(cfg.eval_size)]


def save_folder(model, tok, path: Path, card: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2))
    (tmp / "verifier_card.json").write_text(json.dumps(card, indent=2))
    if path.exists():
        import shutil

        shutil.rmtree(path)
    os.replace(tmp, path)


def checkpoint(run: Path, model, opt, step: int, rng: random.Random, elapsed: float, log_tail: dict,
               extra: dict | None = None) -> None:  # fmt: skip
    """Weights, optimizer, RNG states and step (``checkpoint`` package: safetensors + JSON, atomic)."""
    from checkpoint import save

    state = {"step": step, "elapsed": elapsed, "py_rng": _rng_to_json(rng), "last_eval": log_tail}
    save(run, model, opt, state, extra={"torch_rng": {"state": torch.get_rng_state()}, **(extra or {})})


def _rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def restore(run: Path, model, opt, rng: random.Random, grow: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint written by ``checkpoint``; returns its state (``grow``: see ``checkpoint.load``)."""
    from checkpoint import load, load_extra

    state = load(run, model, opt, grow=grow)
    torch.set_rng_state(load_extra(run, "torch_rng")["state"])
    version, internal, gauss = state["py_rng"]
    rng.setstate((version, tuple(internal), gauss))
    return state


def train(cfg: RecipeConfig, run: Path, out: Path | None, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a verifier; returns the last evaluation. Writes ``run/log.jsonl`` and checkpoints."""
    from tqdm import tqdm

    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(usable_cores())  # respects taskset / cpusets: a pinned run does not oversubscribe
    if cfg.init:  # fine-tuning: the folder's own tokenizer and weights; the aux head starts fresh
        from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

        tok = AutoTokenizer.from_pretrained(cfg.init)
        model = Qwen2VLForConditionalGeneration.from_pretrained(cfg.init, dtype=torch.float32)
        torch.manual_seed(cfg.seed)
    else:
        tok = build_tokenizer()
        model = build_model(cfg, tok)
    encoder = Encoder(tok)
    pool = onpolicy_val = None
    if cfg.onpolicy:
        from shapesworld.onpolicy import OnPolicyPool

        pool = OnPolicyPool(Path(cfg.onpolicy), "train")
        onpolicy_val = OnPolicyPool(Path(cfg.onpolicy), "val").examples(limit=cfg.eval_size * 2, seed=cfg.seed)
    aux_head = nn.Linear(model.config.text_config.hidden_size, len(AUX_CLASSES))
    model.add_module("aux_head", aux_head)  # saved with the checkpoint; dropped from the shipped folder
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(cfg.seed)
    step, elapsed, last_eval = 0, 0.0, {}
    if resume and latest_checkpoint(run) is not None:
        state = restore(run, model, opt, rng)
        step, elapsed, last_eval = state["step"], state["elapsed"], state["last_eval"]
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    captured: dict = {}
    model.model.visual.register_forward_hook(lambda m, i, o: captured.__setitem__("merged", o.pooler_output))
    val = validation_set(cfg)
    specs = prompts("train")

    def run_eval() -> dict:
        got = evaluate_model(model, encoder, val)
        if onpolicy_val is not None:
            got |= {f"onpolicy_{k}": v for k, v in evaluate_model(model, encoder, onpolicy_val).items()}
        return {k: round(v, 4) for k, v in got.items()} | {"step": step}

    budget = cfg.minutes * 60
    log = open(run / "log.jsonl", "a")
    if cfg.init and step == 0:  # the starting point, so the log shows what fine-tuning changed
        last_eval = run_eval()
        log.write(json.dumps({"step": 0, "t": 0.0, "eval": last_eval}) + "\n")
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", disable=not progress, desc="train-verifier")
    last_eval_t = last_ckpt_t = elapsed
    model.train()
    while elapsed < budget and step < cfg.max_steps:
        t0 = time.perf_counter()
        frac = elapsed / budget
        n_cap = int(cfg.batch * cfg.caption_fraction)
        n_on = int((cfg.batch - n_cap) * cfg.onpolicy_fraction) if pool is not None else 0
        weights = weights_at(1.0 if cfg.init else frac, cfg)  # a fine-tune skips the easy-first curriculum
        synthetic = [mixed_example(rng, specs, weights) for _ in range(cfg.batch - n_cap - n_on)]
        batch = synthetic + [pool.draw(rng) for _ in range(n_on)]
        enc = encoder(batch)
        z = yes_no_logit(model, enc, encoder)
        merged = captured["merged"][: len(synthetic) * CELLS * CELLS]  # on-policy rows have no object map
        loss_answer = nn.functional.binary_cross_entropy_with_logits(z, enc["answer"])
        loss_caption = torch.zeros(())
        aux_batch = synthetic
        if n_cap:
            cap_batch = [mixed_example(rng, specs, {"exist": 1.0}, mild_p=0.0) for _ in range(n_cap)]
            loss_caption = model(**caption_inputs(encoder, cap_batch)).loss
            merged = torch.cat([merged, captured["merged"]])
            aux_batch = synthetic + cap_batch
        pos_weight = torch.full((len(AUX_CLASSES),), 20.0)  # targets are sparse: ~3 positives in 384
        loss_aux = nn.functional.binary_cross_entropy_with_logits(aux_head(merged), aux_targets(aux_batch),
                                                                  pos_weight=pos_weight)  # fmt: skip
        loss = loss_answer + cfg.aux_weight * loss_aux + cfg.caption_weight * loss_caption
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        dt = time.perf_counter() - t0
        elapsed += dt
        bar.update(int(elapsed) - bar.n)
        if step % 20 == 0:
            acc = ((z > 0).float() == enc["answer"]).float().mean().item()
            log.write(json.dumps({"step": step, "t": round(elapsed, 1), "loss": round(loss_answer.item(), 4),
                                  "aux": round(loss_aux.item(), 4), "caption": round(loss_caption.item(), 4),
                                  "acc": round(acc, 3), "lr": lr}) + "\n")  # fmt: skip
            log.flush()
            bar.set_postfix(loss=f"{loss_answer.item():.3f}", cap=f"{loss_caption.item():.3f}", acc=f"{acc:.2f}")
        if elapsed - last_eval_t >= cfg.eval_every_s or elapsed >= budget:
            last_eval = run_eval()
            log.write(json.dumps({"step": step, "t": round(elapsed, 1), "eval": last_eval}) + "\n")
            log.flush()
            bar.write(f"step {step} t={elapsed:.0f}s eval {last_eval}")
            last_eval_t = elapsed
        if elapsed - last_ckpt_t >= cfg.checkpoint_every_s or elapsed >= budget:
            checkpoint(run, model, opt, step, rng, elapsed, last_eval)
            last_ckpt_t = elapsed
    bar.close()
    if last_eval.get("step") != step:  # the loop ended between evaluations (step cap): one final look
        last_eval = run_eval()
        log.write(json.dumps({"step": step, "t": round(elapsed, 1), "eval": last_eval}) + "\n")
        checkpoint(run, model, opt, step, rng, elapsed, last_eval)
    log.close()
    if out is not None:
        del model.aux_head
        card = {"system_prompt": SYSTEM_PROMPT, "recipe": asdict(cfg), "steps": step, "train_seconds": round(elapsed),
                "examples": step * cfg.batch, "validation": last_eval, "world": "shapesworld",
                "image_size": IMAGE_SIZE}  # fmt: skip
        save_folder(model, tok, out, card)
    return last_eval

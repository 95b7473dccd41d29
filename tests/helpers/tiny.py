"""Tiny random-weight models built offline from configs, for tests (no hub, no download).

``build_tokenizer`` trains a byte-level BPE on a small in-memory corpus (our templates, JSON keys, tag
names), so JSON answers take few tokens; ``build_causal_lm`` saves a Qwen2 causal LM folder that
``AutoModelForCausalLM`` / ``AutoTokenizer`` / ``transformers serve`` load like any local model.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}<image>{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<image>"]


def _corpus() -> list[str]:
    from decomposer.llm import DECOMPOSE_TEMPLATE, VALIDATE_TEMPLATE
    from dvreward.tags import QUALITY_ASPECTS, SEMANTIC_TAGS

    lines = [DECOMPOSE_TEMPLATE, VALIDATE_TEMPLATE]
    lines += [f'{{"semantic": [{{"question": "Is there a {t}?", "tag": "{t}", "parents": [1, 2]}}]}}'
              for t in SEMANTIC_TAGS]
    lines += [f'{{"quality": [{{"question": "Is it good?", "aspect": "{a}"}}]}}' for a in QUALITY_ASPECTS]
    lines += ['{"verdicts": [{"index": 1, "necessary": true}, {"index": 2, "necessary": false}]}',
              "Yes", "No", "yes", "no"]
    return lines * 3


def build_tokenizer(vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>")  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_causal_lm(path: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random-weight Qwen2 causal LM + tokenizer folder at ``path`` and return it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok) + (-len(tok)) % 64, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, tie_word_embeddings=True)  # fmt: skip
    model = Qwen2ForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def llm_answer(questions) -> str:
    """The JSON answer our LLM prompt asks for, written from a list of ``Question``s."""
    import json

    sem = [q for q in questions if q.kind == "semantic"]
    pos = {q.id: i for i, q in enumerate(sem, 1)}
    return json.dumps({
        "semantic": [{"question": q.text, "tag": q.tag, "parents": [pos[p] for p in q.parents]} for q in sem],
        "quality": [{"question": q.text, "aspect": q.tag} for q in questions if q.kind == "quality"],
    })  # fmt: skip


def train_json_lm(path: str | Path, pairs: list[tuple[str, str]], steps: int = 300, seed: int = 0) -> Path:
    """Overfit a tiny causal LM (saved at ``path``) to answer each chat ``prompt`` with its ``answer``.

    Loss on the answer tokens only. A few hundred steps on CPU take seconds; the model then decodes
    real, parseable answers greedily, which exercises the ``hf`` backend on a model that works.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_causal_lm(path, seed=seed, hidden=96, layers=2)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    seqs, masks = [], []
    for prompt, answer in pairs:
        ctx = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_dict=True)["input_ids"]  # fmt: skip
        ans = tok(answer + tok.eos_token)["input_ids"]
        seqs.append(ctx + ans)
        masks.append([0] * len(ctx) + [1] * len(ans))
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        labels[i, : len(s)] = torch.where(torch.tensor(m) == 1, torch.tensor(s), torch.tensor(-100))
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(path)
    return path

TRAINED_PROMPTS = ["a photo of two red apples", "a cat to the left of a dog"]

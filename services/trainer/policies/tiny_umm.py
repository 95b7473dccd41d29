"""A tiny unified multimodal model built from field components: a transformers causal LM for text and a
diffusers conditional U-Net as the flow-matching image head, conditioned on the LM's hidden states.

    (input image patches +) prompt (+ <think> plan or edit) --Qwen2ForCausalLM--> hidden states --Linear--> context
    noisy image (+ input image for refinement) --UNet2DConditionModel(t, context)--> velocity v = eps - x0

The U-Net works in pixel space at 32x32: a convolutional U-Net is the inductive bias that makes coherent shapes
cheap to learn (the calibration run's patch transformer drew scattered blocks). It always takes 6 input channels,
the noisy image and an input image (zeros when there is none), so one network serves text-to-image and refinement.
With ``image_patch`` > 0 the language model reads an input image too, as linear 8x8 patch tokens with learnt
positions ahead of the text (Bagel's LLM reads ViT tokens), so the critique and edit it writes during refinement are
about the image it sees. Classifier-free guidance is computed inside ``velocity`` (conditional and null-context rows
in one batch). The reference policy is a frozen copy made by ``freeze_reference``; a Bagel-scale model would disable
its LoRA adapters instead (see ``policies/base.py``).
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from trainer.policies.base import Context


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so left- and right-padded rows see the same positions."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class TextSample:
    ids: torch.Tensor  # (B, L + T) prompt and generated tokens, left-padded
    mask: torch.Tensor  # (B, L + T) 1 = real token
    generated: torch.Tensor  # (B, T) 1 = a generated token (including the stop token)
    logprobs: torch.Tensor  # (B, T) log-prob of each generated token, 0 after the stop
    finished: torch.Tensor  # (B,) True when the row produced the stop token


@dataclass
class TinyUMMConfig:
    vocab_size: int = 320
    pad_token_id: int = 0
    text_hidden: int = 128
    text_layers: int = 4
    image_size: int = 32
    unet_channels: tuple[int, ...] = (32, 64, 96)
    cross_dim: int = 128
    attention_head_dim: int = 16
    image_patch: int = 0  # > 0: the LM also reads an input image as (image_size / image_patch)^2 patch tokens


class TinyUMM(nn.Module):
    def __init__(self, cfg: TinyUMMConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel
        from transformers import Qwen2Config, Qwen2ForCausalLM

        self.cfg = cfg
        self.lm = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=cfg.vocab_size, hidden_size=cfg.text_hidden, intermediate_size=3 * cfg.text_hidden,
            num_hidden_layers=cfg.text_layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, pad_token_id=cfg.pad_token_id, tie_word_embeddings=True,
        ))  # fmt: skip
        n = len(cfg.unet_channels)
        self.unet = UNet2DConditionModel(
            sample_size=cfg.image_size, in_channels=6, out_channels=3, layers_per_block=1,
            block_out_channels=cfg.unet_channels,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",), cross_attention_dim=cfg.cross_dim,
            attention_head_dim=cfg.attention_head_dim, norm_num_groups=16,
        )  # fmt: skip
        self.proj = nn.Linear(cfg.text_hidden, cfg.cross_dim)
        self.null = nn.Parameter(torch.zeros(1, 1, cfg.cross_dim))  # the unconditional context of CFG
        if cfg.image_patch:  # the LM's view of an input image (refinement): linear patch tokens + positions
            n = (cfg.image_size // cfg.image_patch) ** 2
            self.image_in = nn.Linear(3 * cfg.image_patch**2, cfg.text_hidden)
            self.image_pos = nn.Parameter(torch.zeros(1, n, cfg.text_hidden))
        self._reference: TinyUMM | None = None
        self._use_reference = False

    image_shape = property(lambda self: (3, self.cfg.image_size, self.cfg.image_size))

    # ---- reference policy -----------------------------------------------------------------------
    def freeze_reference(self) -> None:
        ref = copy.deepcopy(self)
        ref._reference = None
        ref.requires_grad_(False).eval()
        object.__setattr__(self, "_reference", ref)  # not a submodule: never trained, never saved

    @contextmanager
    def reference(self):
        if self._reference is None:
            raise RuntimeError("call freeze_reference() before asking for the reference policy")
        prev, self._use_reference = self._use_reference, True
        try:
            yield
        finally:
            self._use_reference = prev

    def _active(self) -> TinyUMM:
        return self._reference if self._use_reference and self._reference is not None else self

    def language_parameters(self):
        """The language model's weights (and its view of an input image): what writes plans and edits and
        encodes the prompt, for ``optim.lm_lr``; the U-Net, the context projection and the CFG null are not."""
        yield from self.lm.parameters()
        if self.cfg.image_patch:
            yield from (self.image_in.weight, self.image_in.bias, self.image_pos)

    # ---- text -----------------------------------------------------------------------------------
    def _lm_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor | None) -> dict:
        """The LM's inputs: token ids, or (with an input image and an image path) image patch tokens
        followed by the token embeddings. Positions count real tokens only."""
        m = self._active()
        if image is None or not self.cfg.image_patch:
            return {"input_ids": input_ids, "attention_mask": attention_mask,
                    "position_ids": _positions(attention_mask)}  # fmt: skip
        p = self.cfg.image_patch
        b = image.shape[0]
        patches = image.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, 3 * p * p)
        tokens = m.image_in(patches) + m.image_pos
        embeds = torch.cat([tokens, m.lm.model.embed_tokens(input_ids)], 1)
        mask = torch.cat([torch.ones(b, tokens.shape[1], dtype=attention_mask.dtype), attention_mask], 1)
        return {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": _positions(mask)}

    def _image_tokens(self, image: torch.Tensor | None) -> int:
        return 0 if image is None or not self.cfg.image_patch else (self.cfg.image_size // self.cfg.image_patch) ** 2

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               image: torch.Tensor | None = None) -> Context:
        """Hidden states of the prompt (and plan), after the input image's tokens when there is one; the
        input image also goes to the image head (``Context.image``)."""
        m = self._active()
        inputs = self._lm_inputs(input_ids, attention_mask, image)
        out = m.lm.model(**inputs)
        return Context(m.proj(out.last_hidden_state), inputs["attention_mask"], image)

    def token_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       image: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """log p(token_k | tokens_<k) for k >= 1, (B, L - 1); left or right padding (positions from the mask);
        with an input image the tokens are read after its patch tokens."""
        n = self._image_tokens(image)
        logits = self._active().lm(**self._lm_inputs(input_ids, attention_mask, image)).logits[:, n:-1].float()
        return torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)

    @torch.no_grad()
    def sample_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                    stop_token_id: int, pad_token_id: int, temperature: float = 1.0, top_p: float = 1.0,
                    generator: torch.Generator | None = None,
                    image: torch.Tensor | None = None) -> TextSample:  # fmt: skip
        """Continue left-padded prompts (ending in ``<think>``) by sampling until ``stop_token_id`` or
        ``max_new_tokens``. Returns the full sequences (still left-padded), their mask, the generated part's
        mask and the sampled tokens' log-probs at temperature 1 (what ``token_logprobs`` recomputes). With an
        input ``image`` the LM reads its patch tokens first (refinement: a critique of that image)."""
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("sample_text needs left-padded prompts (every row's last position a real token)")
        ids, mask = input_ids, attention_mask
        b = ids.shape[0]
        done = torch.zeros(b, dtype=torch.bool)
        gen_mask, logps = [], []
        for _ in range(max_new_tokens):
            logits = self._active().lm(**self._lm_inputs(ids, mask, image)).logits[:, -1].float()
            probs = torch.softmax(logits / temperature, -1)
            if top_p < 1.0:
                sorted_p, order = probs.sort(-1, descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < top_p
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
                probs = probs / probs.sum(-1, keepdim=True)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            tok = torch.where(done, torch.full_like(tok, pad_token_id), tok)
            lp = torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1)
            live = (~done).long()
            ids = torch.cat([ids, tok[:, None]], 1)
            mask = torch.cat([mask, live[:, None]], 1)
            gen_mask.append(live)
            logps.append(torch.where(done, torch.zeros_like(lp), lp))
            done = done | (tok == stop_token_id)
            if bool(done.all()):
                break
        return TextSample(ids, mask, torch.stack(gen_mask, 1), torch.stack(logps, 1), done)

    # ---- image ----------------------------------------------------------------------------------
    def _unet(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, image) -> torch.Tensor:
        cond = image if image is not None else torch.zeros_like(x)
        return self._active().unet(torch.cat([x, cond], 1), t * 1000, encoder_hidden_states=hidden,
                                   encoder_attention_mask=mask).sample  # fmt: skip

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Context, cfg_scale: float = 1.0) -> torch.Tensor:
        """Guided velocity, (B, 3, H, W); ``t`` (B,) in [0, 1]."""
        if cfg_scale == 1.0:
            return self._unet(x, t, ctx.hidden, ctx.mask, ctx.image)
        b = x.shape[0]
        null = self._active().null.expand(b, 1, -1)
        pad = ctx.hidden.shape[1] - 1
        null_hidden = torch.cat([null, torch.zeros(b, pad, null.shape[-1], dtype=null.dtype)], 1)
        null_mask = torch.zeros_like(ctx.mask)
        null_mask[:, 0] = 1
        image = None if ctx.image is None else torch.cat([ctx.image, ctx.image])
        v = self._unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx.hidden, null_hidden]),
                       torch.cat([ctx.mask, null_mask]), image)  # fmt: skip
        v_cond, v_null = v.chunk(2)
        return v_null + cfg_scale * (v_cond - v_null)

    def flow_loss(self, x0: torch.Tensor, ctx: Context, drop_cond: torch.Tensor | None = None,
                  generator: torch.Generator | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Rectified-flow loss: x_t = (1 - t) x0 + t eps, target v = eps - x0; t half uniform, half
        logit-normal (more weight mid-trajectory, as SD3); rows in ``drop_cond`` see the null context.
        ``weight`` (B, 1, H, W), optional: a per-pixel weight (the weighted mean is returned)."""
        b = x0.shape[0]
        u = torch.rand(b, generator=generator)
        ln = torch.sigmoid(torch.randn(b, generator=generator))
        t = torch.where(torch.rand(b, generator=generator) < 0.5, u, ln)
        eps = torch.randn(x0.shape, generator=generator)
        xt = (1 - t.view(b, 1, 1, 1)) * x0 + t.view(b, 1, 1, 1) * eps
        hidden, mask = ctx.hidden, ctx.mask
        if drop_cond is not None and drop_cond.any():
            null = self.null.expand(b, 1, -1)
            hidden = torch.where(drop_cond.view(b, 1, 1), torch.cat([null, torch.zeros_like(hidden[:, 1:])], 1), hidden)
            null_mask = torch.zeros_like(mask)
            null_mask[:, 0] = 1
            mask = torch.where(drop_cond.view(b, 1), null_mask, mask)
        v = self._unet(xt, t, hidden, mask, ctx.image)
        err = (v.float() - (eps - x0)) ** 2
        if weight is None:
            return err.mean()
        w = weight.expand_as(err)
        return (err * w).sum() / w.sum()

    # ---- persistence ----------------------------------------------------------------------------
    @torch.no_grad()
    def fingerprint(self) -> float:
        """The flow loss on a fixed seeded batch (random tokens and images, fixed t and noise): a cheap
        evaluation that depends on every weight and on the model code. Saved beside the weights and checked
        on load, so weights loaded into changed code fail loudly instead of training a broken model."""
        g = torch.Generator().manual_seed(20260101)
        ids = torch.randint(1, self.cfg.vocab_size, (2, 8), generator=g)
        x0 = torch.rand((2, *self.image_shape), generator=g) * 2 - 1
        was = self.training
        self.eval()
        loss = self.flow_loss(x0, self.encode(ids, torch.ones_like(ids)), generator=g)
        if self.cfg.image_patch:  # the image path too: refinement context and the LM reading an image
            image = torch.rand((2, *self.image_shape), generator=g) * 2 - 1
            loss = loss + self.flow_loss(x0, self.encode(ids, torch.ones_like(ids), image), generator=g)
            loss = loss - self.token_logprobs(ids, torch.ones_like(ids), image).mean()
        self.train(was)
        return float(loss)

    def check_fingerprint(self, recorded: float | None, where: str) -> None:
        if recorded is None:
            return
        now = self.fingerprint()
        if abs(now - recorded) > 1e-4 * max(1.0, abs(recorded)):
            raise RuntimeError(f"{where}: the model evaluates to {now:.6f} on the fixed probe batch but recorded "
                               f"{recorded:.6f} when it was saved: the weights were loaded into different model "
                               "code (or a different config); refusing to train on them")  # fmt: skip

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self, str(path / "model.safetensors"))
        raw = asdict(self.cfg) | {"fingerprint": self.fingerprint()}
        (path / "umm_config.json").write_text(json.dumps(raw, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TinyUMM:
        from safetensors.torch import load_model

        if not (Path(path) / "umm_config.json").is_file():  # a model folder of another kind, or a typo
            raise FileNotFoundError(f"{path} is not a UMM folder (no umm_config.json)")
        raw = json.loads((Path(path) / "umm_config.json").read_text())
        recorded = raw.pop("fingerprint", None)
        raw["unet_channels"] = tuple(raw["unet_channels"])
        model = cls(TinyUMMConfig(**raw))
        load_model(model, str(Path(path) / "model.safetensors"))
        model.check_fingerprint(recorded, str(path))
        return model.eval()

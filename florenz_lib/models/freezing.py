"""The Florenz freezing policy and parameter counts P (total) and Pt (trainable)."""
from __future__ import annotations

from torch import nn

from .florenz import FlorenzForConditionalGeneration

# Gemma decoders train only what the surgery added, plus the (FVT-free) embeddings and tied LM head.
GEMMA_TRAINABLE = ("encoder_attn", "post_encoder_attention_layernorm", "embed_tokens")


def apply_freezing_policy(model: FlorenzForConditionalGeneration) -> None:
    """Vision tower and projector frozen; BART encoder trained; Florence decoders fully trained;
    Gemma decoders frozen except cross attention, its gate and norm, the embeddings and the LM head."""
    for module in (model.vision_tower, model.multi_modal_projector):
        module.requires_grad_(False)
    model.encoder.requires_grad_(True)
    if model.config.family == "florence":
        model.decoder.requires_grad_(True)
    else:
        for name, param in model.decoder.named_parameters():
            param.requires_grad_(any(part in name for part in GEMMA_TRAINABLE))
    model.lm_head.requires_grad_(True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(P, Pt); tied parameters count once."""
    params = list(model.parameters())  # nn.Module.parameters() already de-duplicates shared tensors
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)

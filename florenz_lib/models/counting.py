"""Forward MACs F per sample, counted with torch.utils.flop_counter.FlopCounterMode.

FlopCounterMode counts 2 FLOPs per multiply-add; we report MACs = FLOPs / 2, the unit of the paper's
compute C = S * F * (1 + Pt/P). Attention is counted because every submodule runs eager attention while
counting: SDPA on CPU dispatches to a fused op FlopCounterMode does not count. The inputs live on the
model's device, so a model built on the meta device (the paper's sizes, no memory) is counted too.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.flop_counter import FlopCounterMode

from .configs import num_image_tokens
from .florenz import DECODER_START, FlorenzForConditionalGeneration


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    configs = {id(m.config): m.config for m in model.modules()
               if hasattr(getattr(m, "config", None), "_attn_implementation")}
    saved = {key: config._attn_implementation for key, config in configs.items()}
    for config in configs.values():
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = saved[key]


@torch.no_grad()
def forward_macs(model: FlorenzForConditionalGeneration, image_size: int, encoder_text_tokens: int,
                 decoder_tokens: int) -> int:
    """MACs of one sample's forward pass: image tokens + encoder_text_tokens prompt tokens in the encoder,
    decoder_tokens target tokens in the decoder. No padding mask: one unpadded sample needs none, and
    masking costs no multiply-adds."""
    device = next(model.parameters()).device
    n_image = num_image_tokens(model.config.florence2_config().vision_config, image_size)
    input_ids = torch.cat([torch.full((1, n_image), model.image_token_id, device=device),
                           torch.full((1, encoder_text_tokens), 5, device=device)], dim=1)
    decoder_input_ids = torch.full((1, decoder_tokens), 5, device=device)
    decoder_input_ids[0, 0] = DECODER_START
    was_training = model.training
    model.eval()
    try:
        with eager_attention(model), FlopCounterMode(display=False) as counter:
            model(input_ids=input_ids, attention_mask=None, decoder_input_ids=decoder_input_ids,
                  pixel_values=torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2

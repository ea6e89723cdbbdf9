"""Forward MACs F per sample, counted with torch.utils.flop_counter.FlopCounterMode.

FlopCounterMode counts 2 FLOPs per multiply-add and includes attention matmuls (eager attention);
we report MACs = FLOPs / 2, the unit of the paper's compute C = S * F * (1 + Pt/P).
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .configs import num_image_tokens
from .florenz import DECODER_START, FlorenzForConditionalGeneration


@torch.no_grad()
def forward_macs(model: FlorenzForConditionalGeneration, image_size: int, encoder_text_tokens: int,
                 decoder_tokens: int) -> int:
    """MACs of one sample's forward pass: image tokens + encoder_text_tokens prompt tokens in the encoder,
    decoder_tokens target tokens in the decoder."""
    n_image = num_image_tokens(model.spec.florence2_config().vision_config, image_size)
    input_ids = torch.cat([torch.full((1, n_image), model.image_token_id),
                           torch.full((1, encoder_text_tokens), 5)], dim=1)
    decoder_input_ids = torch.full((1, decoder_tokens), 5)
    decoder_input_ids[0, 0] = DECODER_START
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
              pixel_values=torch.zeros(1, 3, image_size, image_size), decoder_input_ids=decoder_input_ids)
    model.train(was_training)
    return counter.get_total_flops() // 2

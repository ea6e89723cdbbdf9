"""The Florenz encoder-decoder: Florence-2 vision tower, projector and BART encoder, with either the
Florence-2 BART decoder (florence family) or a Gemma-2 decoder with gated cross attention (gemma family).
The decoder has its own (decoder-tokenizer) vocabulary; final logits are softcapped at 30."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import BartConfig, Florence2Config, Gemma2Config
from transformers.models.bart.modeling_bart import BartDecoder, BartEncoder
from transformers.models.florence2.modeling_florence2 import Florence2MultiModalProjector, Florence2VisionBackbone

from ..io import replacing
from .configs import FINAL_LOGIT_SOFTCAP
from .cross_attention import Gemma2CrossAttentionDecoder

# Decoder token ids (Gemma convention, used by both families after FVT).
DECODER_PAD, DECODER_EOS, DECODER_BOS = 0, 1, 2
DECODER_START = DECODER_EOS
FAMILIES = ("florence", "gemma")


@dataclass
class FlorenzSpec:
    """Everything needed to rebuild a Florenz model's structure (saved as config.json beside the weights)."""
    family: str
    florence2: dict           # Florence2Config.to_dict(): vision tower, projector, encoder
    decoder_vocab_size: int
    gemma2: dict | None = None  # Gemma2Config.to_dict() for the gemma family
    final_logit_softcap: float = FINAL_LOGIT_SOFTCAP

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if (self.family == "gemma") != (self.gemma2 is not None):
            raise ValueError("a gemma2 config is required for, and only for, the gemma family")

    def florence2_config(self) -> Florence2Config:
        return Florence2Config(**self.florence2)

    def bart_decoder_config(self) -> BartConfig:
        text = self.florence2_config().text_config.to_dict()
        text.update(vocab_size=self.decoder_vocab_size, pad_token_id=DECODER_PAD, eos_token_id=DECODER_EOS,
                    bos_token_id=DECODER_BOS, decoder_start_token_id=DECODER_START)
        config = BartConfig(**text)
        config._attn_implementation = "eager"
        return config

    def gemma2_config(self) -> Gemma2Config:
        config = Gemma2Config(**self.gemma2)
        config._attn_implementation = "eager"
        return config


class FlorenzForConditionalGeneration(nn.Module):
    def __init__(self, spec: FlorenzSpec):
        super().__init__()
        self.spec = spec
        florence = spec.florence2_config()
        florence.text_config._attn_implementation = "eager"
        self.image_token_id = florence.image_token_id
        self.vision_tower = Florence2VisionBackbone(florence.vision_config)
        self.multi_modal_projector = Florence2MultiModalProjector(florence)
        self.encoder = BartEncoder(florence.text_config)
        if spec.family == "florence":
            self.decoder = BartDecoder(spec.bart_decoder_config())
            hidden = florence.text_config.d_model
        else:
            gemma = spec.gemma2_config()
            self.decoder = Gemma2CrossAttentionDecoder(gemma, encoder_hidden_size=florence.text_config.d_model)
            hidden = gemma.hidden_size
        self.lm_head = nn.Linear(hidden, spec.decoder_vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.lm_head.weight = self.decoder.embed_tokens.weight

    def encode(self, input_ids, attention_mask, pixel_values) -> torch.Tensor:
        """Image features replace the <image> placeholder tokens of the prompt, as in Florence-2."""
        embeds = self.encoder.embed_tokens(input_ids)
        if pixel_values is not None:
            image_tokens = self.multi_modal_projector(self.vision_tower(pixel_values).last_hidden_state)
            placeholder = (input_ids == self.image_token_id).unsqueeze(-1)
            # a meta model (parameter and MAC counting) has no values to check
            if not placeholder.is_meta and placeholder.sum() != image_tokens.shape[0] * image_tokens.shape[1]:
                raise ValueError(f"prompt has {int(placeholder.sum())} <image> tokens, "
                                 f"the vision tower gives {image_tokens.shape[0] * image_tokens.shape[1]}")
            embeds = embeds.masked_scatter(placeholder, image_tokens.to(embeds.dtype))
        return self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

    def decode(self, decoder_input_ids, decoder_attention_mask, encoder_hidden_states, attention_mask):
        hidden = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                              encoder_hidden_states=encoder_hidden_states,
                              encoder_attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        cap = self.spec.final_logit_softcap
        return torch.tanh(logits / cap) * cap

    def forward(self, input_ids, attention_mask, pixel_values, decoder_input_ids, decoder_attention_mask=None):
        encoded = self.encode(input_ids, attention_mask, pixel_values)
        return self.decode(decoder_input_ids, decoder_attention_mask, encoded, attention_mask)


def save_florenz(model: FlorenzForConditionalGeneration, out_dir: str) -> None:
    """config.json + model.safetensors (tied weights stored once), each written atomically."""
    # The weights are moved into place first, so config.json marks a complete model.
    with replacing(os.path.join(out_dir, "config.json")) as tmp_config, \
            replacing(os.path.join(out_dir, "model.safetensors")) as tmp_weights:
        with open(tmp_config, "w") as f:
            json.dump(asdict(model.spec), f, indent=1, default=str)
        save_model(model, str(tmp_weights))


def load_florenz(model_dir: str) -> FlorenzForConditionalGeneration:
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"no Florenz model in {model_dir}: {config_path} is missing")
    with open(config_path) as f:
        spec = FlorenzSpec(**json.load(f))
    model = FlorenzForConditionalGeneration(spec)
    load_model(model, os.path.join(model_dir, "model.safetensors"))
    model.tie_weights()
    return model

"""The Florenz encoder-decoder: Florence-2 vision tower, projector and BART encoder, with either the
Florence-2 BART decoder (florence family) or a Gemma-2 decoder with gated cross attention (gemma family).
The decoder has its own (decoder-tokenizer) vocabulary; final logits are softcapped at 30."""
from __future__ import annotations

import os
import tempfile

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (BartConfig, Florence2Config, Gemma2Config, GenerationConfig, GenerationMixin,
                          PreTrainedConfig, PreTrainedModel)
from transformers.cache_utils import EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.bart.modeling_bart import BartDecoder, BartEncoder
from transformers.models.florence2.modeling_florence2 import Florence2MultiModalProjector, Florence2VisionBackbone

from .configs import FINAL_LOGIT_SOFTCAP
from .cross_attention import Gemma2CrossAttentionDecoder

# Decoder token ids (Gemma convention, used by both families after FVT).
DECODER_PAD, DECODER_EOS, DECODER_BOS = 0, 1, 2
DECODER_START = DECODER_EOS
FAMILIES = ("florence", "gemma")


@strict
class FlorenzConfig(PreTrainedConfig):
    """Everything needed to rebuild a Florenz model's structure; saved as config.json by save_pretrained."""
    model_type = "florenz"
    family: str = "florence"
    florence2: dict | None = None       # Florence2Config.to_dict(): vision tower, projector, encoder
    decoder_vocab_size: int = 0
    gemma2: dict | None = None          # Gemma2Config.to_dict() for the gemma family
    final_logit_softcap: float = FINAL_LOGIT_SOFTCAP
    tie_word_embeddings: bool = True    # the LM head is the decoder's embedding matrix
    is_encoder_decoder: bool = True
    pad_token_id: int = DECODER_PAD
    bos_token_id: int = DECODER_BOS
    eos_token_id: int = DECODER_EOS
    decoder_start_token_id: int = DECODER_START

    def validate_architecture(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.florence2 is None:
            raise ValueError("a Florenz config needs the florence2 config of its vision tower and encoder")
        if (self.family == "gemma") != (self.gemma2 is not None):
            raise ValueError("a gemma2 config is required for, and only for, the gemma family")

    def florence2_config(self) -> Florence2Config:
        return Florence2Config(**self.florence2)

    def bart_decoder_config(self) -> BartConfig:
        text = self.florence2_config().text_config.to_dict()
        text.update(vocab_size=self.decoder_vocab_size, pad_token_id=DECODER_PAD, eos_token_id=DECODER_EOS,
                    bos_token_id=DECODER_BOS, decoder_start_token_id=DECODER_START,
                    forced_bos_token_id=DECODER_BOS, forced_eos_token_id=DECODER_EOS)
        config = BartConfig(**text)
        config._attn_implementation = "eager"
        return config

    def gemma2_config(self) -> Gemma2Config:
        config = Gemma2Config(**self.gemma2)
        config._attn_implementation = "eager"
        return config

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        """The decoder's config: generation sizes its cache from it."""
        if encoder:
            return self.florence2_config().text_config
        return self.gemma2_config() if self.family == "gemma" else self.bart_decoder_config()


class FlorenzForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = FlorenzConfig
    _tied_weights_keys = {"lm_head.weight": "decoder.embed_tokens.weight"}
    _no_split_modules = ["GatedCrossAttentionGemma2DecoderLayer", "BartDecoderLayer", "BartEncoderLayer"]

    def __init__(self, config: FlorenzConfig):
        config.validate_architecture()
        super().__init__(config)
        florence = config.florence2_config()
        florence.text_config._attn_implementation = "eager"
        self.image_token_id = florence.image_token_id
        self.vision_tower = Florence2VisionBackbone(florence.vision_config)
        self.multi_modal_projector = Florence2MultiModalProjector(florence)
        self.encoder = BartEncoder(florence.text_config)
        if config.family == "florence":
            self.decoder = BartDecoder(config.bart_decoder_config())
            hidden = florence.text_config.d_model
        else:
            gemma = config.gemma2_config()
            self.decoder = Gemma2CrossAttentionDecoder(gemma, encoder_hidden_size=florence.text_config.d_model)
            hidden = gemma.hidden_size
        self.lm_head = nn.Linear(hidden, config.decoder_vocab_size, bias=False)
        self.post_init()
        self.generation_config = paper_generation_config()

    def _init_weights(self, module):
        """The parts are transformers models that initialise themselves, and the surgery's new layers
        initialise as DESIGN.md says (gates 0, projections normal(0, 0.02)): nothing to redo here."""

    def get_input_embeddings(self):
        return self.decoder.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

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

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None, use_cache=None,
                **kwargs) -> Seq2SeqLMOutput:
        """Logits over the decoder vocabulary, softcapped at 30. Generation encodes once and passes
        encoder_outputs; decoding then reuses the decoder's self-attention cache."""
        if encoder_outputs is None:
            encoder_outputs = BaseModelOutput(last_hidden_state=self.encode(input_ids, attention_mask, pixel_values))
        encoded = encoder_outputs.last_hidden_state
        decoder_cache = past_key_values
        if self.config.family == "gemma" and isinstance(past_key_values, EncoderDecoderCache):
            # generate hands encoder-decoder models a two-part cache; the gemma decoder caches only its
            # self attention (cross attention to the fixed encoder states is recomputed)
            decoder_cache = past_key_values.self_attention_cache
        decoded = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                               encoder_hidden_states=encoded, encoder_attention_mask=attention_mask,
                               past_key_values=decoder_cache, use_cache=use_cache)
        cap = self.config.final_logit_softcap
        logits = torch.tanh(self.lm_head(decoded.last_hidden_state) / cap) * cap
        cache = past_key_values if decoder_cache is not past_key_values else decoded.past_key_values
        return Seq2SeqLMOutput(logits=logits, past_key_values=cache, encoder_last_hidden_state=encoded)

    def _maybe_prepare_encoder_kwargs_for_generation(self, inputs_tensor, model_kwargs, model_input_name,
                                                     generation_config):
        # the encoder needs the image as well as the prompt ids, so it runs here once, before decoding
        if model_kwargs.get("encoder_outputs") is None:
            model_kwargs["encoder_outputs"] = BaseModelOutput(last_hidden_state=self.encode(
                inputs_tensor, model_kwargs.get("attention_mask"), model_kwargs.pop("pixel_values", None)))
        return model_kwargs


def paper_generation_config() -> GenerationConfig:
    """The authors' decoding: labels are bos text eos, so bos is forced first; beam 4, 128 new tokens.
    The token ids are the design's (DESIGN.md section 5), the same for every checkpoint."""
    return GenerationConfig(decoder_start_token_id=DECODER_START, bos_token_id=DECODER_BOS, eos_token_id=DECODER_EOS,
                            pad_token_id=DECODER_PAD, forced_bos_token_id=DECODER_BOS,
                            forced_eos_token_id=DECODER_EOS, num_beams=4, max_new_tokens=128)


def save_florenz(model: FlorenzForConditionalGeneration, out_dir: str) -> None:
    """save_pretrained (config.json + model.safetensors, tied weights stored once) into a temporary
    directory, then moved into place file by file so a reader never sees a half-written model."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".saving-") as tmp:
        model.save_pretrained(tmp)
        for name in sorted(os.listdir(tmp), key=lambda n: n == "config.json"):  # config last
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))


def strict_from_pretrained(model_class, model_dir: str, **kwargs):
    """from_pretrained of a local directory, strictly: transformers would re-initialise a weight that is
    missing or whose shape does not fit the config with only a warning; here that is an error naming the
    directory and the tensors."""
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(f"no checkpoint in {model_dir}: config.json is missing")
    # ignore_mismatched_sizes only makes transformers report the mismatches instead of raising a
    # message without tensor names; any mismatch is raised below
    model, info = model_class.from_pretrained(model_dir, local_files_only=True, output_loading_info=True,
                                              ignore_mismatched_sizes=True, **kwargs)
    problems = {kind: sorted(map(str, info.get(kind) or ()))
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        details = "; ".join(f"{kind}: {', '.join(keys)}" for kind, keys in problems.items() if keys)
        raise ValueError(f"checkpoint {model_dir} does not fit its config: {details}")
    return model


def load_florenz(model_dir: str) -> FlorenzForConditionalGeneration:
    model = strict_from_pretrained(FlorenzForConditionalGeneration, model_dir)
    # a checkpoint without generation_config.json would otherwise get one derived from config.json, which
    # in transformers 5 carries no decoder start token: generation would fail
    model.generation_config = paper_generation_config()
    return model

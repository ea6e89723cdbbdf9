"""Model surgery: turn the base models into Florenz models (DESIGN.md section 5)."""
from __future__ import annotations

from tokenizers import Tokenizer
from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

from .florenz import DECODER_BOS, DECODER_EOS, DECODER_PAD, FlorenzForConditionalGeneration, FlorenzConfig
from .fvt import fast_vocabulary_transfer


def _load_florence_encoder(model: FlorenzForConditionalGeneration, florence: Florence2ForConditionalGeneration):
    base = florence.model
    model.vision_tower.load_state_dict(base.vision_tower.state_dict())
    model.multi_modal_projector.load_state_dict(base.multi_modal_projector.state_dict())
    model.encoder.load_state_dict(base.language_model.encoder.state_dict())
    model.encoder.embed_tokens.weight.data.copy_(base.language_model.shared.weight.data)


def florenz_from_florence2(florence: Florence2ForConditionalGeneration, encoder_tokenizer: Tokenizer,
                           decoder_tokenizer: Tokenizer) -> FlorenzForConditionalGeneration:
    """Florence family: keep Florence-2 whole, move its decoder to the decoder tokenizer by FVT."""
    config = FlorenzConfig(family="florence", florence2=florence.config.to_dict(),
                       decoder_vocab_size=decoder_tokenizer.get_vocab_size())
    model = FlorenzForConditionalGeneration(config)
    _load_florence_encoder(model, florence)
    decoder_state = {k: v for k, v in florence.model.language_model.decoder.state_dict().items()
                     if not k.startswith("embed_tokens.")}
    missing, unexpected = model.decoder.load_state_dict(decoder_state, strict=False)
    if unexpected or missing != ["embed_tokens.weight"]:
        raise ValueError(f"Florence-2 decoder does not fit: missing {missing}, unexpected {unexpected}")
    text = florence.config.text_config
    special_map = {DECODER_PAD: text.pad_token_id, DECODER_EOS: text.eos_token_id,
                   DECODER_BOS: text.bos_token_id, decoder_tokenizer.token_to_id("<unk>"): encoder_tokenizer.token_to_id("<unk>")}
    new_rows = fast_vocabulary_transfer(florence.model.language_model.shared.weight.data, encoder_tokenizer,
                                        decoder_tokenizer, special_map)
    model.decoder.embed_tokens.weight.data.copy_(new_rows)  # also the LM head: the two are tied
    return model


def florenz_from_florence2_and_gemma2(florence: Florence2ForConditionalGeneration,
                                      gemma: Gemma2ForCausalLM) -> FlorenzForConditionalGeneration:
    """Gemma family: Florence-2 vision tower and encoder, Gemma-2 decoder with gated cross attention."""
    gemma_config = gemma.config.to_dict()
    config = FlorenzConfig(family="gemma", florence2=florence.config.to_dict(),
                       decoder_vocab_size=gemma.config.vocab_size, gemma2=gemma_config)
    model = FlorenzForConditionalGeneration(config)
    _load_florence_encoder(model, florence)
    model.decoder.load_language_model(gemma.model)
    return model

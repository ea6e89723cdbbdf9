"""transformers configs for the world's tiny base models, built from the study config."""
from __future__ import annotations

from transformers import BartConfig, Florence2Config, Florence2VisionConfig, Gemma2Config

# Florence-2's DaViT stage geometry (first stage: 7x7 conv, stride 4; later: 3x3, stride 2), cut to
# as many stages as the config gives.
_PATCH_SIZE, _PATCH_STRIDE, _PATCH_PADDING = (7, 3, 3, 3), (4, 2, 2, 2), (3, 1, 1, 1)
_PATCH_PRENORM = (False, True, True, True)
IMAGE_TOKEN_ID = 4  # "<image>" in the encoder tokenizer
FINAL_LOGIT_SOFTCAP = 30.0


def florence2_config(base: dict, encoder_vocab_size: int) -> Florence2Config:
    n = len(base["vision_dims"])
    if n > len(_PATCH_SIZE):
        raise ValueError(f"vision_dims has {n} stages; DaViT has at most {len(_PATCH_SIZE)}")
    vision = Florence2VisionConfig(
        depths=list(base["vision_depths"]), embed_dim=list(base["vision_dims"]),
        num_heads=list(base["vision_heads"]), num_groups=list(base["vision_heads"]),
        patch_size=list(_PATCH_SIZE[:n]), patch_stride=list(_PATCH_STRIDE[:n]),
        patch_padding=list(_PATCH_PADDING[:n]), patch_prenorm=list(_PATCH_PRENORM[:n]),
        window_size=4, drop_path_rate=0.0, projection_dim=base["d_model"],
    )
    text = BartConfig(
        vocab_size=encoder_vocab_size, d_model=base["d_model"],
        encoder_layers=base["encoder_layers"], decoder_layers=base["decoder_layers"],
        encoder_attention_heads=base["attention_heads"], decoder_attention_heads=base["attention_heads"],
        encoder_ffn_dim=base["ffn_dim"], decoder_ffn_dim=base["ffn_dim"],
        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        forced_eos_token_id=2, scale_embedding=False,
    )
    config = Florence2Config(vision_config=vision.to_dict(), text_config=text.to_dict(),
                             image_token_id=IMAGE_TOKEN_ID)
    config._attn_implementation = "eager"
    return config


def gemma2_config(base: dict, vocab_size: int) -> Gemma2Config:
    config = Gemma2Config(
        vocab_size=vocab_size, hidden_size=base["hidden_size"], intermediate_size=base["intermediate_size"],
        num_hidden_layers=base["num_hidden_layers"], num_attention_heads=base["num_attention_heads"],
        num_key_value_heads=base["num_key_value_heads"], head_dim=base["head_dim"],
        query_pre_attn_scalar=base["head_dim"], max_position_embeddings=512, sliding_window=256,
        final_logit_softcapping=FINAL_LOGIT_SOFTCAP, attn_logit_softcapping=50.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
    )
    config._attn_implementation = "eager"  # Gemma-2's attention softcap is only honoured by eager
    return config


def num_image_tokens(vision: Florence2VisionConfig, image_size: int) -> int:
    """Tokens the projector emits: one per cell of the last DaViT grid plus one pooled token."""
    side = image_size
    for k, s, p in zip(vision.patch_size, vision.patch_stride, vision.patch_padding):
        side = (side + 2 * p - k) // s + 1
    return side * side + 1

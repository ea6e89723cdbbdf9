"""Gemma-2 decoder with tanh-gated cross attention to the Florence encoder (the Florenz 3.5B/11.2B design).

In every decoder layer, between self attention and MLP:
    h = h + post_encoder_attention_layernorm(encoder_attn(h, enc)) * tanh(encoder_attn_gate)
The gate starts at 0, so a fresh model computes exactly what the plain Gemma-2 LM computes. The restructure
stage builds these layers on the meta device and gives them their values itself (restructure.py).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import Gemma2Config, Gemma2Model
from transformers.models.gemma2.modeling_gemma2 import Gemma2DecoderLayer, Gemma2RMSNorm, eager_attention_forward

CROSS_ATTENTION_INIT_STD = 0.02  # the new projections start normal(0, 0.02) (DESIGN.md section 5)


class Gemma2EncoderAttention(nn.Module):
    """Cross attention: queries from the raw residual stream (no pre-norm), keys and values from the
    encoder width, Gemma's query scaling and attention softcap, no RoPE."""

    def __init__(self, config: Gemma2Config, encoder_hidden_size: int):
        super().__init__()
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.query_pre_attn_scalar ** -0.5
        self.softcap = config.attn_logit_softcapping
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(encoder_hidden_size, config.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(encoder_hidden_size, config.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            nn.init.normal_(proj.weight, mean=0.0, std=CROSS_ATTENTION_INIT_STD)

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask=None):
        batch, tgt_len, _ = hidden_states.shape
        src_len = encoder_hidden_states.shape[1]
        query = self.q_proj(hidden_states).view(batch, tgt_len, -1, self.head_dim).transpose(1, 2)
        key = self.k_proj(encoder_hidden_states).view(batch, src_len, -1, self.head_dim).transpose(1, 2)
        value = self.v_proj(encoder_hidden_states).view(batch, src_len, -1, self.head_dim).transpose(1, 2)
        additive_mask = None
        if encoder_attention_mask is not None:
            blocked = encoder_attention_mask[:, None, None, :].to(query.dtype) == 0
            additive_mask = torch.zeros_like(blocked, dtype=query.dtype).masked_fill(
                blocked, torch.finfo(query.dtype).min)
        out, _ = eager_attention_forward(self, query, key, value, additive_mask,
                                         scaling=self.scaling, softcap=self.softcap)
        return self.o_proj(out.reshape(batch, tgt_len, -1))


class GatedCrossAttentionGemma2DecoderLayer(Gemma2DecoderLayer):
    def __init__(self, config: Gemma2Config, layer_idx: int, encoder_hidden_size: int):
        super().__init__(config, layer_idx)
        self.encoder_attn = Gemma2EncoderAttention(config, encoder_hidden_size)
        self.post_encoder_attention_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.encoder_attn_gate = nn.Parameter(torch.zeros(1))

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, position_ids=None,
                past_key_values=None, encoder_hidden_states=None, encoder_attention_mask=None, **kwargs):
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states), position_embeddings=position_embeddings,
            attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values, **kwargs)
        hidden_states = residual + self.post_attention_layernorm(hidden_states)

        if encoder_hidden_states is not None:
            attended = self.encoder_attn(hidden_states, encoder_hidden_states, encoder_attention_mask)
            hidden_states = hidden_states + (self.post_encoder_attention_layernorm(attended)
                                             * torch.tanh(self.encoder_attn_gate))

        residual = hidden_states
        hidden_states = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden_states)))
        return residual + hidden_states


class Gemma2CrossAttentionDecoder(Gemma2Model):
    """Gemma2Model whose layers attend to the encoder; Gemma2Model.forward passes the encoder states
    through its **kwargs to every layer."""

    def __init__(self, config: Gemma2Config, encoder_hidden_size: int):
        super().__init__(config)
        self.layers = nn.ModuleList(GatedCrossAttentionGemma2DecoderLayer(config, i, encoder_hidden_size)
                                    for i in range(config.num_hidden_layers))

"""Fast Vocabulary Transfer (Gee et al. 2022) from the encoder tokenizer to the decoder tokenizer."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer

from .tokenizers import METASPACE


def fast_vocabulary_transfer(old_embeddings: torch.Tensor, old_tokenizer: Tokenizer, new_tokenizer: Tokenizer,
                             special_map: dict[int, int]) -> torch.Tensor:
    """Row i of the result is the mean of the old rows of new token i's pieces under the old tokenizer.

    special_map maps new special-token ids straight to old ids (bos, eos, unk, pad); the sentencepiece
    word marker becomes a space before re-tokenizing, as the decoder token stands for " word".
    """
    old_unk = old_tokenizer.token_to_id("<unk>")
    rows = []
    for new_id in range(new_tokenizer.get_vocab_size()):
        if new_id in special_map:
            rows.append(old_embeddings[special_map[new_id]])
            continue
        text = new_tokenizer.id_to_token(new_id).replace(METASPACE, " ")
        old_ids = old_tokenizer.encode(text, add_special_tokens=False).ids or [old_unk]
        rows.append(old_embeddings[old_ids].mean(dim=0))
    return torch.stack(rows)

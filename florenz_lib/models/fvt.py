"""Fast Vocabulary Transfer (Gee et al. 2022) from the encoder tokenizer to the decoder tokenizer.

Row i of the new embedding matrix is the mean of the old rows of new token i's pieces under the old
tokenizer. Fast over a real vocabulary (Gemma-2's 256000 tokens): the token texts are re-tokenized in one
batch and the means are taken for many rows at once.
"""
from __future__ import annotations

import json
import re

import torch
from tokenizers import Tokenizer

from .tokenizers import METASPACE

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_CHUNK_ROWS = 65536  # old rows gathered at a time


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2 / BART byte-level BPE's printable stand-in for every byte (its `bytes_to_unicode`)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return symbols


def _components(node, kind: str) -> bool:
    """Whether a tokenizer.json component (or a Sequence of them) contains one of type `kind`."""
    if isinstance(node, dict):
        return node.get("type") == kind or any(_components(v, kind) for v in node.values())
    if isinstance(node, list):
        return any(_components(v, kind) for v in node)
    return False


def _byte_fallback(tokenizer: Tokenizer) -> bool:
    return bool(json.loads(tokenizer.to_str()).get("model", {}).get("byte_fallback"))


def _byte_level(tokenizer: Tokenizer) -> bool:
    return _components(json.loads(tokenizer.to_str()).get("pre_tokenizer"), "ByteLevel")


def transfer_pieces(old_tokenizer: Tokenizer, new_tokenizer: Tokenizer,
                    special_map: dict[int, int]) -> list[list[int]]:
    """The old-token ids whose rows make each new token's row.

    - special_map's new ids (bos, eos, unk, pad) map straight to their old ids;
    - a byte-fallback token <0xNN> of the new tokenizer stands for byte NN: an ASCII byte is re-tokenized as
      its character; any other byte maps to the old tokenizer's own token for that byte where it is
      byte-level (BART's alphabet has one for each of the 256 bytes); a byte it cannot encode gets <unk>;
    - every other token is re-tokenized with the sentencepiece word marker turned into a space, as the
      decoder token stands for " word"; one that gives no pieces gets <unk>.
    """
    old_unk = old_tokenizer.token_to_id("<unk>")
    size = new_tokenizer.get_vocab_size()
    byte_tokens = _byte_fallback(new_tokenizer)
    alphabet = _byte_level_alphabet() if _byte_level(old_tokenizer) else {}
    pieces: list[list[int] | None] = [None] * size
    texts, text_ids = [], []
    for new_id in range(size):
        if new_id in special_map:
            pieces[new_id] = [special_map[new_id]]
            continue
        token = new_tokenizer.id_to_token(new_id)
        if token is None:
            raise ValueError(f"the new tokenizer has no token with id {new_id} below its size {size}")
        match = _BYTE_TOKEN.fullmatch(token) if byte_tokens else None
        if match:
            byte = int(match.group(1), 16)
            if byte >= 0x80:
                old_id = old_tokenizer.token_to_id(alphabet[byte]) if alphabet else None
                pieces[new_id] = [old_id if old_id is not None else old_unk]
                continue
            token = chr(byte)
        texts.append(token.replace(METASPACE, " "))
        text_ids.append(new_id)
    encode = getattr(old_tokenizer, "encode_batch_fast", old_tokenizer.encode_batch)
    for new_id, encoding in zip(text_ids, encode(texts, add_special_tokens=False)):
        pieces[new_id] = encoding.ids or [old_unk]
    if old_unk is None and any(p is None or None in p for p in pieces):
        raise ValueError("the old tokenizer has no <unk> for tokens it cannot encode")
    return pieces


def fast_vocabulary_transfer(old_embeddings: torch.Tensor, old_tokenizer: Tokenizer, new_tokenizer: Tokenizer,
                             special_map: dict[int, int]) -> torch.Tensor:
    """The new embedding matrix (one row per new-tokenizer id) in old_embeddings' dtype; each row is the
    mean, taken in float32, of the old rows `transfer_pieces` gives for its token. Rows with the same
    number of pieces are averaged together, a chunk at a time (`old[ids].mean(1)`: the same floating-point
    result as averaging each token's rows on its own)."""
    pieces = transfer_pieces(old_tokenizer, new_tokenizer, special_map)
    n_old = old_embeddings.shape[0]
    largest = max(max(p) for p in pieces)
    if largest >= n_old:
        raise ValueError(f"the old tokenizer gives ids up to {largest}, past the {n_old} old embedding rows")
    weight = old_embeddings.detach().to(torch.float32)
    out = torch.empty(len(pieces), old_embeddings.shape[1], dtype=old_embeddings.dtype,
                      device=old_embeddings.device)
    by_length: dict[int, list[int]] = {}
    for new_id, p in enumerate(pieces):
        by_length.setdefault(len(p), []).append(new_id)
    for length, new_ids in by_length.items():
        step = max(1, _CHUNK_ROWS // length)
        for start in range(0, len(new_ids), step):
            chunk = new_ids[start:start + step]
            ids = torch.tensor([pieces[i] for i in chunk], dtype=torch.long, device=weight.device)
            out[torch.tensor(chunk, device=weight.device)] = weight[ids].mean(dim=1).to(out.dtype)
    return out

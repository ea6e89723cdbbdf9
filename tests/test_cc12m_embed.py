"""Tests of florenz_lib.cc12m.embed on a tiny registered open_clip architecture (CPU, seconds)."""

from __future__ import annotations

import io
import json

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
from PIL import Image

from cc12m_fixtures import TINY_OPEN_CLIP, build_tiny_open_clip
from florenz_lib.cc12m.embed import embed_image_slice, embed_sentence_chunk, load_open_clip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    name, weights = build_tiny_open_clip(tmp_path_factory.mktemp("clip"))
    return {"model": name, "weights": str(weights), "batch_size": 4, "device": "cpu"}


def _jpeg(colour, size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images_parquet(tmp_path_factory):
    rng = np.random.default_rng(0)
    keys = [f"{i:016x}" for i in range(11)]
    images = [_jpeg(tuple(int(v) for v in rng.integers(0, 256, 3)), (32 + 3 * i, 40 - i)) for i in range(11)]
    path = tmp_path_factory.mktemp("images") / "slice-00000.parquet"
    # Small row groups: the reader must re-batch across them.
    pq.write_table(pa.table({"key": keys, "split": ["train"] * 9 + ["heldout"] * 2, "png": images,
                             "url": [f"http://x/{k}" for k in keys]}), path, row_group_size=3)
    return path


@pytest.fixture(scope="module")
def corpus_chunk(tmp_path_factory):
    sentences = ["a dog on a beach", "two red circles", "the sky is blue", "a man holds rice",
                 "a cat sleeps", "green trees in the park", "a small boat", "an old red car"]
    splits = ["train", "heldout", "train", "train", "heldout", "train", "train", "heldout"]
    path = tmp_path_factory.mktemp("corpus") / "de-000.parquet"
    pq.write_table(pa.table({"pair_id": [f"de-{i:09d}" for i in range(8)], "split": splits, "lang": ["de"] * 8,
                             "en": sentences, "text": [f"satz {i}" for i in range(8)]}), path, row_group_size=2)
    return path, sentences, splits


def _load(path):
    with np.load(path) as npz:
        return npz["ids"], npz["emb"]


def test_image_embeddings_are_normalised_half_and_independent_of_batch_size(tiny_clip, images_parquet, tmp_path):
    stats = embed_image_slice(tiny_clip, images_parquet, tmp_path / "b4.npz")
    ids, emb = _load(tmp_path / "b4.npz")
    assert stats == {"n": 11, "dim": TINY_OPEN_CLIP["embed_dim"]}
    assert ids.tolist() == pq.read_table(images_parquet).column("key").to_pylist()  # every image, file order
    assert emb.dtype == np.float16 and emb.shape == (11, TINY_OPEN_CLIP["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert np.abs(emb[0] - emb[1]).max() > 0.01  # different images, different embeddings

    embed_image_slice({**tiny_clip, "batch_size": 5}, images_parquet, tmp_path / "b5.npz")
    embed_image_slice({**tiny_clip, "batch_size": 64}, images_parquet, tmp_path / "b64.npz")
    # decoding in this process, or in two loader processes taking batches in turn: the file's order
    embed_image_slice({**tiny_clip, "batch_size": 2, "workers": 0}, images_parquet, tmp_path / "w0.npz")
    embed_image_slice({**tiny_clip, "batch_size": 2, "workers": 2}, images_parquet, tmp_path / "w2.npz")
    for other in ("b5.npz", "b64.npz", "w0.npz", "w2.npz"):
        other_ids, other_emb = _load(tmp_path / other)
        assert other_ids.tolist() == ids.tolist()
        np.testing.assert_allclose(other_emb.astype(np.float32), emb.astype(np.float32), atol=1e-3)

    # The same image through the model directly: the file holds the model's own embedding.
    model, _, preprocess = load_open_clip(tiny_clip)
    first = pq.read_table(images_parquet).column("png")[0].as_py()
    with torch.no_grad():
        direct = model.encode_image(preprocess(Image.open(io.BytesIO(first)).convert("RGB"))[None], normalize=True)
    np.testing.assert_allclose(emb[0].astype(np.float32), direct[0].numpy(), atol=2e-3)


def test_sentence_embeddings_cover_the_split_and_match_the_text_tower(tiny_clip, corpus_chunk, tmp_path):
    path, sentences, splits = corpus_chunk
    for split in ("train", "heldout"):
        stats = embed_sentence_chunk(tiny_clip, path, tmp_path / f"{split}.npz", split)
        ids, emb = _load(tmp_path / f"{split}.npz")
        expected = [f"de-{i:09d}" for i, s in enumerate(splits) if s == split]
        assert ids.tolist() == expected and stats["n"] == len(expected)
        assert emb.dtype == np.float16
        np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)

    # Without a split (as the alignment stage reads them): every pair, in corpus order.
    assert embed_sentence_chunk(tiny_clip, path, tmp_path / "all.npz")["n"] == 8
    all_ids, all_emb = _load(tmp_path / "all.npz")
    assert all_ids.tolist() == [f"de-{i:09d}" for i in range(8)]
    ids, emb = _load(tmp_path / "train.npz")
    np.testing.assert_allclose(all_emb[[s == "train" for s in splits]].astype(np.float32), emb.astype(np.float32), atol=1e-3)
    embed_sentence_chunk({**tiny_clip, "batch_size": 1}, path, tmp_path / "one.npz", "train")
    np.testing.assert_allclose(_load(tmp_path / "one.npz")[1].astype(np.float32), emb.astype(np.float32), atol=1e-3)

    model, tokenizer, _ = load_open_clip(tiny_clip)
    train_sentences = [s for s, split in zip(sentences, splits) if split == "train"]
    with torch.no_grad():
        direct = model.encode_text(tokenizer(train_sentences), normalize=True).numpy()
    np.testing.assert_allclose(emb.astype(np.float32), direct, atol=2e-3)


def test_empty_split_writes_an_empty_file(tiny_clip, corpus_chunk, tmp_path):
    path, _, _ = corpus_chunk
    assert embed_sentence_chunk(tiny_clip, path, tmp_path / "none.npz", "validation")["n"] == 0
    ids, emb = _load(tmp_path / "none.npz")
    assert ids.shape == (0,) and emb.shape == (0, TINY_OPEN_CLIP["embed_dim"]) and emb.dtype == np.float16


def test_wrong_shaped_weights_name_the_file_and_the_tensor(tiny_clip, tmp_path):
    state = safetensors.torch.load_file(tiny_clip["weights"])
    state["text_projection"] = torch.zeros(32, 8)
    bad = tmp_path / "wrong_shape.safetensors"
    safetensors.torch.save_file(state, str(bad))
    with pytest.raises(ValueError, match=r"wrong_shape\.safetensors(.|\n)*text_projection"):
        load_open_clip({**tiny_clip, "weights": str(bad)})

    del state["text_projection"]
    missing = tmp_path / "missing_tensor.safetensors"
    safetensors.torch.save_file(state, str(missing))
    with pytest.raises(ValueError, match=r"missing_tensor\.safetensors(.|\n)*text_projection"):
        load_open_clip({**tiny_clip, "weights": str(missing)})


def test_torch_checkpoint_loads_with_weights_only(tiny_clip, tmp_path):
    state = safetensors.torch.load_file(tiny_clip["weights"])
    good = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, good)  # a DDP training checkpoint
    model, _, _ = load_open_clip({**tiny_clip, "weights": str(good)})
    assert torch.equal(model.state_dict()["text_projection"], state["text_projection"])


class _Payload:
    """Unpickling it would run a command: the loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_objects_in_weights_are_refused(tiny_clip, tmp_path):
    state = safetensors.torch.load_file(tiny_clip["weights"])
    marker = tmp_path / "unpickled"
    bad = tmp_path / "evil.bin"
    torch.save({**state, "extra": _Payload(marker)}, bad)
    with pytest.raises(ValueError, match=r"evil\.bin"):
        load_open_clip({**tiny_clip, "weights": str(bad)})
    assert not marker.exists()


def test_missing_weights_and_unknown_model_name_the_key(tiny_clip, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cc12m\.clip\.weights.*nowhere\.safetensors"):
        load_open_clip({**tiny_clip, "weights": str(tmp_path / "nowhere.safetensors")})
    with pytest.raises(ValueError, match=r"cc12m\.clip\.model.*hf-hub:org/model"):
        load_open_clip({**tiny_clip, "model": "hf-hub:org/model"})


def test_an_architecture_of_ones_own_is_registered_from_model_config(tiny_clip, tmp_path):
    weights = tiny_clip["weights"]
    config = tmp_path / "florenz-unregistered-clip.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    assert "florenz-unregistered-clip" not in open_clip.list_models()
    with pytest.raises(ValueError, match="not a registered open_clip architecture"):
        load_open_clip({"model": "florenz-unregistered-clip", "weights": str(weights)})
    model, tokenizer, _ = load_open_clip({"model": "florenz-unregistered-clip", "model_config": str(config),
                                          "weights": str(weights)})
    assert model.text_projection.shape[1] == TINY_OPEN_CLIP["embed_dim"]
    with pytest.raises(FileNotFoundError, match="cc12m.clip.model_config"):
        load_open_clip({"model": "another-name", "model_config": str(config), "weights": str(weights)})

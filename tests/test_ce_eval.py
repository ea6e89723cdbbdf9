"""CE evaluation scores whole targets (not cut at the training limit), counts the ones longer than its own
limit, and batches by target length without changing any sample's CE."""
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from florenz_lib.data.shards import TEST_SPLIT_SCHEMA
from florenz_lib.evaluate.ce import SPLITS, decoder_positions, evaluate_ce, split_ce
from florenz_lib.models.florenz import DECODER_START, load_florenz, save_florenz
from florenz_lib.models.inputs import Example, png_to_tensor
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.models.tokenizers import save_tokenizer
from florenz_lib.train.runs import batch_ce, model_collator

IMAGE_SIZE, MAX_PROMPT_TOKENS, TRAINING_LIMIT = 32, 24, 16
LONG = ("two red circles left of a blue square and a photo of a small green star and there is a big bow "
        "two red circles left of a blue square")  # 36 decoder tokens, over the training limit
SPLIT_ROWS = {  # (task, lang, source, target)
    "UC": [("caption", "es", "", LONG), ("caption", "es", "", "una pequeña estrella verde"),
           ("caption", "zh", "", "两个红色的圆形在一个蓝色方块的左边")],
    "ST": [("translation", "es", "a photo of a small green star", "una pequeña estrella verde"),
           ("translation", "zh", "two red circles", "两个红色的圆形")],
    "SC": [("caption", "en", "", "a"), ("caption", "de", "", "zwei rote Kreise links von einem blauen Quadrat"),
           ("caption", "en", "", LONG), ("caption", "en", "", "there is a big bow")],
}


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory, base_models, tokenizers):
    """A restructured gemma-family model, its tokenizers and the three test splits."""
    root = tmp_path_factory.mktemp("ce")
    torch.manual_seed(0)
    save_florenz(florenz_from_florence2_and_gemma2(*base_models), root / "model")
    save_tokenizer(tokenizers[0], str(root / "tok" / "encoder.json"))
    save_tokenizer(tokenizers[1], str(root / "tok" / "decoder.json"))
    os.makedirs(root / "test")
    for split, rows in SPLIT_ROWS.items():
        table = [{"key": f"{split}-{i}", "png": _png(i), "task": task, "lang": lang, "source": source, "target": target}
                 for i, (task, lang, source, target) in enumerate(rows)]
        pq.write_table(pa.Table.from_pylist(table, schema=TEST_SPLIT_SCHEMA), root / "test" / f"{split}.parquet")
    return root


def _evaluate(study, tmp_path, limit: int) -> dict:
    out = tmp_path / "ce.json"
    result = evaluate_ce(str(study / "model"), str(study / "test"), str(study / "tok"), IMAGE_SIZE, 2,
                         MAX_PROMPT_TOKENS, limit, str(out))
    assert json.loads(out.read_text()) == result
    return result


def _rows(study, split: str) -> list[dict]:
    return pq.read_table(study / "test" / f"{split}.parquet").to_pylist()


def _example(row: dict) -> Example:
    return Example(png_to_tensor(row["png"]), row["task"], row["lang"], row["source"], row["target"])


def _direct_ce(model, collate, row: dict) -> float:
    """Mean token CE of the whole target, teacher-forced by hand (the collator gives only the prompt)."""
    ids = collate.decoder_tokenizer.encode(row["target"]).ids
    batch = collate([_example(row)])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"], decoder_input_ids=torch.tensor([[DECODER_START] + ids[:-1]]),
                   decoder_attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits
    return F.cross_entropy(logits[0].float(), torch.tensor(ids)).item()


def _lang_means(rows: list[dict], ces: list[float]) -> dict[str, float]:
    langs = sorted({r["lang"] for r in rows})
    return {lang: np.mean([ce for r, ce in zip(rows, ces) if r["lang"] == lang]) for lang in langs}


@torch.no_grad()
def test_targets_longer_than_the_training_limit_are_scored_whole(study, tmp_path):
    result = _evaluate(study, tmp_path, 1024)
    model = load_florenz(str(study / "model")).eval()
    assert result["max_target_tokens"] == decoder_positions(model) == 512  # 1024 capped by the decoder
    collate = model_collator(model, str(study / "tok"), IMAGE_SIZE, MAX_PROMPT_TOKENS, TRAINING_LIMIT)
    for split in SPLITS:
        rows = _rows(study, split)
        direct = [_direct_ce(model, collate, r) for r in rows]
        expected = _lang_means(rows, direct)
        assert {lang: v["ce"] for lang, v in result["per_lang"][split].items()} == pytest.approx(expected, rel=1e-5)
        assert result[split] == pytest.approx(np.mean(direct), rel=1e-5)
        assert result["truncated"][split] == {lang: {"samples": 0, "tokens": 0} for lang in expected}
    long_row = _rows(study, "UC")[0]
    assert len(collate.decoder_tokenizer.encode(long_row["target"]).ids) > TRAINING_LIMIT
    cut_at_training_limit = batch_ce(model, collate([_example(long_row)])).item()
    assert abs(cut_at_training_limit - _direct_ce(model, collate, long_row)) > 1e-3


@torch.no_grad()
def test_targets_over_the_eval_limit_are_cut_counted_and_warned_about(study, tmp_path, caplog):
    limit = 8
    with caplog.at_level("WARNING", logger="florenz_lib.evaluate.ce"):
        result = _evaluate(study, tmp_path, limit)
    assert result["max_target_tokens"] == limit
    model = load_florenz(str(study / "model")).eval()
    collate = model_collator(model, str(study / "tok"), IMAGE_SIZE, MAX_PROMPT_TOKENS, limit)
    for split in SPLITS:
        rows = _rows(study, split)
        lengths = [len(collate.decoder_tokenizer.encode(r["target"]).ids) for r in rows]
        expected = {lang: {"samples": sum(n > limit for r, n in zip(rows, lengths) if r["lang"] == lang),
                           "tokens": sum(n - limit for r, n in zip(rows, lengths) if r["lang"] == lang and n > limit)}
                    for lang in {r["lang"] for r in rows}}
        assert result["truncated"][split] == expected
        cut = _lang_means(rows, [batch_ce(model, collate([_example(r)])).item() for r in rows])
        assert {lang: v["ce"] for lang, v in result["per_lang"][split].items()} == pytest.approx(cut, rel=1e-5)
    assert result["truncated"]["UC"] == {"es": {"samples": 1, "tokens": 36 - limit}, "zh": {"samples": 0, "tokens": 0}}
    assert "CE UC es: 1 of 2 targets are longer than 8" in caplog.text and "CE ST" not in caplog.text


@torch.no_grad()
def test_length_sorted_batches_give_the_per_sample_ce_of_unsorted_ones(study):
    model = load_florenz(str(study / "model")).eval()
    collate = model_collator(model, str(study / "tok"), IMAGE_SIZE, MAX_PROMPT_TOKENS, 512)
    rows = [r for split in SPLITS for r in _rows(study, split)]
    lengths = [len(collate.decoder_tokenizer.encode(r["target"]).ids) for r in rows]
    assert lengths != sorted(lengths)  # sorting regroups the batches
    unsorted = [ce for start in range(0, len(rows), 3)
                for ce in batch_ce(model, collate([_example(r) for r in rows[start:start + 3]])).tolist()]
    np.testing.assert_allclose(split_ce(model, collate, rows, lengths, 3), unsorted, rtol=0, atol=1e-5)

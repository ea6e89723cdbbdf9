"""The world's fine-tuning mix and the fine-tuning stage (Table 2's 'after fine-tuning' models)."""
import json
from collections import Counter

import pyarrow.parquet as pq
import torch

from florenz_lib.data.shards import read_training_shards
from florenz_lib.downstream.finetune import finetune_run
from florenz_lib.models.florenz import save_florenz
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.models.inputs import Example, Seq2SeqCollator
from florenz_lib.models.tokenizers import save_tokenizer
from florenz_lib.world.finetune import FINETUNE_KEYS, write_finetune_shards

WORLD = {"image_size": 32, "max_objects": 2}
FINETUNE = {"steps": 3, "batch_size": 4, "micro_batch_size": 4, "lr": 1e-3, "weight_decay": 0.05, "warmup_steps": 1,
            "grad_clip": 1.0, "threads": 1, "checkpoint_every": 0, "image_size": 48}


def test_mix_covers_every_task_in_every_language_and_is_deterministic(tmp_path):
    stats = write_finetune_shards(WORLD, 7, 3, seed=1, out_dir=tmp_path / "a")
    write_finetune_shards(WORLD, 7, 3, seed=1, out_dir=tmp_path / "b")
    assert [s["rows"] for s in stats["shards"]] == [3, 3, 1]
    assert stats["annotations"] == {key: 7 for key in sorted(FINETUNE_KEYS)} and len(FINETUNE_KEYS) == 11
    for name in ("shard-00000.parquet", "shard-00002.parquet"):
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name))
    rows = read_training_shards(tmp_path / "a").to_pylist()
    for row in rows:
        by_key = {f"{a['task']}-{a['lang']}": a for a in row["annotations"]}
        assert set(by_key) == set(FINETUNE_KEYS)
        # the translations are of the image's own English caption (image-grounded, as Multi30K)
        assert {a["source"] for a in row["annotations"] if a["task"] == "translation"} == {by_key["caption-en"]["target"]}
        assert by_key["translation-fr"]["target"] == by_key["caption-fr"]["target"]
    other_seed = write_finetune_shards(WORLD, 7, 3, seed=2, out_dir=tmp_path / "c")
    assert other_seed["rows"] == 7
    assert read_training_shards(tmp_path / "c").column("png").to_pylist() != [r["png"] for r in rows]


def test_collator_resizes_images_to_the_fine_tuning_resolution(tokenizers):
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    collate = Seq2SeqCollator(*tokenizers, n_image_tokens=4, max_prompt_tokens=8, max_target_tokens=8,
                              decoder_start_id=1, image_size=48)
    batch = collate([Example(image, "caption", "fr", "", "une photo")])
    assert batch["pixel_values"].shape == (1, 3, 48, 48)
    same = Seq2SeqCollator(*tokenizers, 4, 8, 8, decoder_start_id=1, image_size=32)
    assert torch.equal(same._sized(image), image)


def test_finetune_trains_on_all_eleven_task_languages_at_its_own_resolution(tmp_path, base_models, tokenizers):
    torch.manual_seed(0)
    save_florenz(florenz_from_florence2_and_gemma2(*base_models), tmp_path / "pretrained")
    save_tokenizer(tokenizers[0], tmp_path / "tok" / "encoder.json")
    save_tokenizer(tokenizers[1], tmp_path / "tok" / "decoder.json")
    write_finetune_shards(WORLD, 6, 6, seed=0, out_dir=tmp_path / "mix")
    summary = finetune_run(str(tmp_path / "pretrained"), str(tmp_path / "mix"), str(tmp_path / "tok"), FINETUNE,
                           24, 24, seed=0, out_dir=str(tmp_path / "finetuned"))
    assert summary["steps"] == 3 and summary["seen_samples"] == 12
    counts = Counter(summary["task_language_counts"])
    assert sum(counts.values()) == 12 and set(counts) <= set(FINETUNE_KEYS)
    assert any(key.startswith("caption-") and key not in ("caption-en", "caption-de") for key in counts)
    assert json.loads((tmp_path / "finetuned" / "train_summary.json").read_text()) == summary
    assert (tmp_path / "finetuned" / "model.safetensors").stat().st_size > 0

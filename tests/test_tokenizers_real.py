"""The cc12m world's tokenizers: prepare_tokenizers on files in the published Florence-2 / Gemma-2 formats."""
import json

import pytest
from tokenizers import Tokenizer

from tokenizer_fixtures import (florence2_added_tokens, multilingual_texts, write_florence2_tokenizer,
                                write_gemma2_tokenizer)

from florenz_lib.models.inputs import task_prompt
from florenz_lib.models.tokenizers import IMAGE_TOKEN, TokenizerFileError, prepare_tokenizers


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    florence, florence_size = write_florence2_tokenizer(root / "florence2")
    gemma, gemma_size = write_gemma2_tokenizer(root / "gemma2")
    return {"florence": florence, "florence_size": florence_size, "gemma": gemma, "gemma_size": gemma_size}


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizers")
    stats = prepare_tokenizers(sources["florence"], sources["gemma"], str(out))
    return stats, Tokenizer.from_file(str(out / "encoder.json")), Tokenizer.from_file(str(out / "decoder.json"))


def test_fixtures_have_the_published_formats(sources):
    florence = json.loads(open(sources["florence"], encoding="utf-8").read())
    assert florence["model"]["type"] == "BPE" and florence["pre_tokenizer"]["type"] == "ByteLevel"
    assert florence["post_processor"]["type"] == "RobertaProcessing"
    assert [t["content"] for t in florence["added_tokens"]][5:] == florence2_added_tokens()
    assert sources["florence_size"] == 600 + 1024
    gemma = json.loads(open(sources["gemma"], encoding="utf-8").read())
    assert gemma["model"]["byte_fallback"] and gemma["pre_tokenizer"] is None
    assert gemma["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    tok = Tokenizer.from_file(sources["gemma"])
    assert [tok.token_to_id(f"<0x{b:02X}>") is not None for b in range(256)] == [True] * 256
    assert tok.encode("a").tokens[0] == "<bos>" and tok.encode("a").tokens[-1] != "<eos>"  # Gemma adds bos only
    assert "<0xF0>" in tok.encode("\U0001F642").tokens  # an unseen character falls back to its bytes


def test_fixtures_load_as_the_hub_repositories_do(sources):
    from pathlib import Path

    from transformers import AutoTokenizer
    florence = AutoTokenizer.from_pretrained(str(Path(sources["florence"]).parent))
    assert (florence.bos_token_id, florence.pad_token_id, florence.eos_token_id) == (0, 1, 2)
    assert florence.convert_tokens_to_ids("<loc_999>") == 600 + 4 + 999
    gemma = AutoTokenizer.from_pretrained(str(Path(sources["gemma"]).parent))
    assert (gemma.pad_token_id, gemma.eos_token_id, gemma.bos_token_id, gemma.unk_token_id) == (0, 1, 2, 3)


def test_encoder_gets_an_image_token_at_the_end_of_its_vocabulary(sources, prepared):
    stats, encoder, _ = prepared
    assert stats["image_token_id"] == sources["florence_size"] == stats["source_encoder_vocab"]
    assert encoder.token_to_id(IMAGE_TOKEN) == stats["image_token_id"]
    assert stats["encoder_vocab"] == encoder.get_vocab_size() == sources["florence_size"] + 1
    ids = encoder.encode(f"{IMAGE_TOKEN}{IMAGE_TOKEN}What", add_special_tokens=False).ids
    assert ids[:2] == [stats["image_token_id"]] * 2 and stats["image_token_id"] not in ids[2:]
    # Florence-2's own tokens keep their ids
    assert encoder.token_to_id("<loc_0>") == Tokenizer.from_file(sources["florence"]).token_to_id("<loc_0>")


def test_prompt_ids_start_with_bos_and_end_with_eos(prepared):
    _, encoder, _ = prepared
    enc = encoder.encode(task_prompt("caption", "de", ""))
    assert enc.ids[0] == 0 and enc.ids[-1] == 2 and enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    assert encoder.decode(enc.ids) == task_prompt("caption", "de", "")


def test_labels_are_bos_text_eos_with_gemma_ids(sources, prepared):
    stats, _, decoder = prepared
    assert stats["decoder_vocab"] == decoder.get_vocab_size() == sources["gemma_size"]
    assert [decoder.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>", "<unk>")] == [0, 1, 2, 3]
    for text in multilingual_texts()[::40] + ["两个孩子 \U0001F642"]:
        enc = decoder.encode(text)
        assert enc.ids[0] == 2 and enc.ids[-1] == 1 and 1 not in enc.ids[1:-1], text
        assert decoder.decode(enc.ids) == text
    batch = decoder.encode_batch(["a", "b c"])
    assert all(e.ids[-1] == 1 for e in batch) and len(batch[0].ids) != len(batch[1].ids)  # no padding


def test_a_tokenizer_directory_stands_for_its_tokenizer_json(sources, tmp_path):
    from pathlib import Path
    stats = prepare_tokenizers(str(Path(sources["florence"]).parent), str(Path(sources["gemma"]).parent),
                               str(tmp_path))
    assert stats["encoder_source"] == sources["florence"] and (tmp_path / "decoder.json").exists()


def _edited(path, tmp_path, edit):
    spec = json.loads(open(path, encoding="utf-8").read())
    edit(spec)
    out = tmp_path / "edited" / "tokenizer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(spec), encoding="utf-8")
    return str(out)


def _swap_gemma_pad_and_eos(spec):
    vocab = spec["model"]["vocab"]
    vocab["<pad>"], vocab["<eos>"] = vocab["<eos>"], vocab["<pad>"]
    for token in spec["added_tokens"]:
        token["id"] = {0: 1, 1: 0}.get(token["id"], token["id"])


def test_a_gemma_file_with_other_ids_names_itself_and_the_token(sources, tmp_path):
    bad = _edited(sources["gemma"], tmp_path, _swap_gemma_pad_and_eos)
    out = tmp_path / "out"
    with pytest.raises(TokenizerFileError) as error:
        prepare_tokenizers(sources["florence"], bad, str(out))
    assert bad in str(error.value) and "<pad>" in str(error.value)
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_a_florence_file_without_roberta_processing_names_itself(sources, tmp_path):
    bad = _edited(sources["florence"], tmp_path, lambda spec: spec.update(post_processor=None))
    with pytest.raises(TokenizerFileError, match="post-processor") as error:
        prepare_tokenizers(bad, sources["gemma"], str(tmp_path / "out"))
    assert bad in str(error.value)


def test_a_florence_file_without_unk_names_itself_and_the_token(sources, tmp_path):
    def drop_unk(spec):
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<unk>"]
        del spec["model"]["vocab"]["<unk>"]
    bad = _edited(sources["florence"], tmp_path, drop_unk)
    with pytest.raises(TokenizerFileError) as error:
        prepare_tokenizers(bad, sources["gemma"], str(tmp_path / "out"))
    assert bad in str(error.value) and "<unk>" in str(error.value)


def test_a_missing_or_malformed_file_names_itself(sources, tmp_path):
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        prepare_tokenizers(sources["florence"], str(missing), str(tmp_path / "out"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=str(broken)):
        prepare_tokenizers(str(broken), sources["gemma"], str(tmp_path / "out"))


def test_prepared_files_replace_old_ones_whole(sources, tmp_path):
    (tmp_path / "encoder.json").write_text("stale", encoding="utf-8")
    prepare_tokenizers(sources["florence"], sources["gemma"], str(tmp_path))
    assert Tokenizer.from_file(str(tmp_path / "encoder.json")).token_to_id(IMAGE_TOKEN) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.json", "encoder.json"]  # no temporaries left


def test_labels_get_bos_and_eos_whatever_the_gemma_file_adds(sources, tmp_path):
    # transformers rebuilds Gemma's post-processor from tokenizer_config.json, so files come with either
    bare = _edited(sources["gemma"], tmp_path, lambda spec: spec.update(post_processor=None))
    prepare_tokenizers(sources["florence"], bare, str(tmp_path / "out"))
    decoder = Tokenizer.from_file(str(tmp_path / "out" / "decoder.json"))
    assert decoder.encode("Una mujer joven").tokens[0] == "<bos>" and decoder.encode("Una mujer joven").ids[-1] == 1

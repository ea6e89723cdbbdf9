"""The downstream benchmark loaders on fixtures in each public layout and on the synthetic world's output."""
import gzip
import json
from pathlib import Path

import pytest
import yaml

from florenz_lib.downstream.benchmarks import (
    CommuteItem,
    load_coco_karpathy,
    load_commute,
    load_multi30k_task1,
    load_multi30k_task2,
    load_xm3600,
)
from florenz_lib.world.benchmarks import COMMUTE_LANGS, MULTI30K_LANGS, MULTI30K_SPLIT, generate_benchmarks
from florenz_lib.world.grammar import LANGS, N_TEMPLATES

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def write_lines(path: Path, lines: list[str], compress: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def touch_images(images_dir: Path, names: list[str]) -> None:
    for name in names:
        (images_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (images_dir / name).write_bytes(b"image")


@pytest.fixture
def multi30k(tmp_path):
    """Multi30K Task 1 test_2016_flickr (gz) and test_2017_mscoco (COCO names with '#id'), images
    from a flat Flickr dir and a COCO root with val2014/ and train2014/."""
    root, flickr, coco = tmp_path / "multi30k", tmp_path / "flickr30k-images", tmp_path / "coco"
    task1 = root / "data" / "task1"
    write_lines(task1 / "image_splits" / "test_2016_flickr.txt", ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"],
                compress=False)
    write_lines(task1 / "raw" / "test_2016_flickr.en", ["Two young guys outside.", "Several men in hard hats.",
                                                         "A child in a pink dress."])
    write_lines(task1 / "raw" / "test_2016_flickr.de", ["Zwei junge Männer im Freien.", "Mehrere Männer mit Schutzhelmen.",
                                                         "Ein Kind in einem rosa Kleid."])
    touch_images(flickr, ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"])
    write_lines(task1 / "image_splits" / "test_2017_mscoco.txt",
                ["COCO_val2014_000000000042.jpg#2", "COCO_train2014_000000000077.jpg#815"], compress=False)
    write_lines(task1 / "raw" / "test_2017_mscoco.en", ["A cat on a mat.", "A bus in the street."])
    write_lines(task1 / "raw" / "test_2017_mscoco.fr", ["Un chat sur un tapis.", "Un bus dans la rue."])
    touch_images(coco, ["val2014/COCO_val2014_000000000042.jpg", "train2014/COCO_train2014_000000000077.jpg"])
    return root, flickr, coco


def test_multi30k_task1_reads_gz_and_aligns_images(multi30k):
    root, flickr, _ = multi30k
    bench = load_multi30k_task1(root, "test_2016_flickr", "de", flickr)
    assert (bench.name, bench.lang, len(bench.items)) == ("multi30k-task1-test_2016_flickr", "de", 3)
    second = bench.items[1]
    assert second.image_path == flickr / "10002456.jpg"
    assert second.source == "Several men in hard hats."
    assert second.references == ["Mehrere Männer mit Schutzhelmen."]


def test_multi30k_task1_accepts_uncompressed(multi30k):
    root, flickr, _ = multi30k
    raw = root / "data" / "task1" / "raw"
    for lang in ("en", "de"):
        (raw / f"test_2016_flickr.{lang}.gz").unlink()
    write_lines(raw / "test_2016_flickr.en", ["e1", "e2", "e3"], compress=False)
    write_lines(raw / "test_2016_flickr.de", ["d1", "d2", "d3"], compress=False)
    bench = load_multi30k_task1(root, "test_2016_flickr", "de", flickr)
    assert [(i.source, i.references) for i in bench.items] == [("e1", ["d1"]), ("e2", ["d2"]), ("e3", ["d3"])]


def test_multi30k_mscoco_strips_caption_id_and_finds_coco_subfolders(multi30k):
    root, _, coco = multi30k
    bench = load_multi30k_task1(root, "test_2017_mscoco", "fr", coco)
    assert [i.image_path for i in bench.items] == [coco / "val2014" / "COCO_val2014_000000000042.jpg",
                                                   coco / "train2014" / "COCO_train2014_000000000077.jpg"]
    assert bench.items[1].references == ["Un bus dans la rue."]


def test_multi30k_unequal_line_counts_name_file_and_line(multi30k):
    root, flickr, _ = multi30k
    write_lines(root / "data" / "task1" / "raw" / "test_2016_flickr.de", ["eins", "zwei"])
    with pytest.raises(ValueError, match=r"test_2016_flickr\.de\.gz:3: line missing"):
        load_multi30k_task1(root, "test_2016_flickr", "de", flickr)


def test_multi30k_empty_line_names_file_and_line(multi30k):
    root, flickr, _ = multi30k
    write_lines(root / "data" / "task1" / "raw" / "test_2016_flickr.de", ["eins", "", "drei"])
    with pytest.raises(ValueError, match=r"test_2016_flickr\.de\.gz:2: empty line"):
        load_multi30k_task1(root, "test_2016_flickr", "de", flickr)


def test_multi30k_missing_language_and_image_are_named(multi30k):
    root, flickr, _ = multi30k
    with pytest.raises(FileNotFoundError, match=r"test_2016_flickr\.cs\.gz"):
        load_multi30k_task1(root, "test_2016_flickr", "cs", flickr)
    (flickr / "10002456.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"10002456\.jpg.*test_2016_flickr\.txt:2"):
        load_multi30k_task1(root, "test_2016_flickr", "de", flickr)


def test_multi30k_task2_five_references_per_image(tmp_path):
    root, images = tmp_path / "multi30k", tmp_path / "flickr30k-images"
    task2 = root / "data" / "task2"
    names = ["1000092795.jpg", "10002456.jpg"]
    write_lines(task2 / "image_splits" / "test_2016_images.txt", names, compress=False)
    for n in range(1, 6):
        write_lines(task2 / "raw" / f"test_2016.{n}.de", [f"Bild eins, Satz {n}.", f"Bild zwei, Satz {n}."])
    touch_images(images, names)
    bench = load_multi30k_task2(root, "test_2016", "de", images)
    assert (bench.name, bench.lang) == ("multi30k-task2-test_2016", "de")
    assert [i.image_path.name for i in bench.items] == names
    assert bench.items[1].references == [f"Bild zwei, Satz {n}." for n in range(1, 6)]
    write_lines(task2 / "raw" / "test_2016.4.de", ["nur eine Zeile"])
    with pytest.raises(ValueError, match=r"test_2016\.4\.de\.gz:2: line missing"):
        load_multi30k_task2(root, "test_2016", "de", images)
    (task2 / "raw" / "test_2016.5.de.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_2016\.5\.de\.gz"):
        load_multi30k_task2(root, "test_2016", "de", images)


def test_coco_karpathy_test_split(tmp_path):
    coco = tmp_path / "coco"
    annotations = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "split": "test",
         "sentences": [{"raw": "A man riding a horse. ", "tokens": ["a", "man"]}, {"raw": "A horse rider."}]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000002.jpg", "split": "train",
         "sentences": [{"raw": "Not in the test split."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000003.jpg", "split": "restval",
         "sentences": [{"raw": "Not in the test split either."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000004.jpg", "split": "test",
         "sentences": [{"raw": "Two dogs."}]},
    ]}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(annotations, indent=1))
    touch_images(coco, ["val2014/COCO_val2014_000000000001.jpg", "val2014/COCO_val2014_000000000004.jpg"])
    bench = load_coco_karpathy(path, coco)
    assert (bench.name, bench.lang) == ("coco-karpathy-test", "en")
    assert [(i.image_path, i.references) for i in bench.items] == [
        (coco / "val2014" / "COCO_val2014_000000000001.jpg", ["A man riding a horse.", "A horse rider."]),
        (coco / "val2014" / "COCO_val2014_000000000004.jpg", ["Two dogs."])]
    path.write_text('{"images": [\n{"split": "test",,}\n]}')
    with pytest.raises(ValueError, match=r"dataset_coco\.json:2: not JSON"):
        load_coco_karpathy(path, coco)
    del annotations["images"][3]["sentences"]
    path.write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match=r"dataset_coco\.json: images\[3\] is malformed"):
        load_coco_karpathy(path, coco)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_coco_karpathy(tmp_path / "missing.json", coco)


def xm3600_record(key: str, langs: dict[str, list[str]]) -> str:
    record = {"image/key": key, "image/locale": "en"}
    record.update({lang: {"caption": caps, "caption/tokenized": caps} for lang, caps in langs.items()})
    return json.dumps(record, ensure_ascii=False)


def test_xm3600_jsonl_with_jpg_and_png_images(tmp_path):
    images = tmp_path / "images"
    touch_images(images, ["000411001ff7dd4f.jpg", "00b7b0ef0cd6e3a3.png"])
    path = tmp_path / "captions.jsonl"
    write_lines(path, [xm3600_record("000411001ff7dd4f", {"en": ["A dog."], "zh": ["一只狗。", "狗在草地上"]}),
                       xm3600_record("00b7b0ef0cd6e3a3", {"en": ["A cat."], "zh": ["一只猫。"]})], compress=False)
    bench = load_xm3600(path, images, "zh")
    assert (bench.name, bench.lang) == ("xm3600", "zh")
    assert [(i.image_path.name, i.references) for i in bench.items] == [
        ("000411001ff7dd4f.jpg", ["一只狗。", "狗在草地上"]), ("00b7b0ef0cd6e3a3.png", ["一只猫。"])]


@pytest.mark.parametrize("second_line, message", [
    ('{"image/key": "b", "en": {"caption": ["A cat."]}', r"captions\.jsonl:2: not a JSON line"),
    ('{"image/key": "b", "de": {"caption": ["Eine Katze."]}}', r"captions\.jsonl:2: no 'en' captions"),
    ('{"image/key": "b", "en": {"caption": []}}', r"captions\.jsonl:2: no 'en' captions"),
    ('{"en": {"caption": ["A cat."]}}', r"captions\.jsonl:2: no 'image/key'"),
])
def test_xm3600_malformed_lines_name_file_and_line(tmp_path, second_line, message):
    touch_images(tmp_path, ["a.jpg", "b.jpg"])
    path = tmp_path / "captions.jsonl"
    write_lines(path, [xm3600_record("a", {"en": ["A dog."]}), second_line], compress=False)
    with pytest.raises(ValueError, match=message):
        load_xm3600(path, tmp_path, "en")


def test_xm3600_missing_image_names_both_extensions_and_line(tmp_path):
    path = tmp_path / "captions.jsonl"
    write_lines(path, [xm3600_record("gone", {"en": ["A dog."]})], compress=False)
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg or .*gone\.png \(listed at .*captions\.jsonl:1\)"):
        load_xm3600(path, tmp_path, "en")


def write_commute(root: Path, lang: str, rows: list[tuple[str, str, str, str]]) -> None:
    pair = root / f"en-{lang}"
    for column, name in enumerate(("src.en", f"correct.{lang}", f"incorrect.{lang}", "img.order")):
        write_lines(pair / name, [row[column] for row in rows], compress=False)
    touch_images(root / "images", [row[3] for row in rows])


def test_commute_public_layout(tmp_path):
    rows = [("He finally made it to the bank.", "Il a réussi à aller à la banque.", "Il a réussi à atteindre la rive.",
             "e9490cd.jpeg"),
            ("He finally made it to the bank.", "Il a réussi à atteindre la rive.", "Il a réussi à aller à la banque.",
             "98064330.png")]
    write_commute(tmp_path, "fr", rows)
    bench = load_commute(tmp_path, "fr")
    assert bench.lang == "fr"
    assert bench.items == [CommuteItem(tmp_path / "images" / r[3], r[0], r[1], r[2]) for r in rows]
    write_lines(tmp_path / "en-fr" / "incorrect.fr", [rows[0][2], rows[1][2], "une ligne de trop"], compress=False)
    with pytest.raises(ValueError, match=r"src\.en:3: line missing.*incorrect\.fr has 3"):
        load_commute(tmp_path, "fr")
    with pytest.raises(FileNotFoundError, match=r"en-de[/\\]src\.en"):
        load_commute(tmp_path, "de")


def test_loaders_read_the_synthetic_world_benchmarks(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    sizes = {key: 4 for key in config["data"]["benchmarks"]}  # every world benchmark, 4 scenes or images each
    stats = generate_benchmarks(config["world"], sizes, seed=0, out_dir=tmp_path)
    for lang in LANGS:
        bench = load_xm3600(tmp_path / "xm3600" / "captions.jsonl", tmp_path / "xm3600" / "images", lang)
        assert len(bench.items) == 4
        assert all(len(item.references) == N_TEMPLATES and item.image_path.suffix == ".png" for item in bench.items)
    records = [json.loads(line) for line in (tmp_path / "xm3600" / "captions.jsonl").read_text().splitlines()]
    assert bench.items[2].references == records[2][bench.lang]["caption"]
    for lang in COMMUTE_LANGS:
        bench = load_commute(tmp_path / "commute", lang)
        assert len(bench.items) == stats["commute"]["per_lang"][lang]["items"] > 0
        meta = [json.loads(line) for line in (tmp_path / "commute" / f"en-{lang}" / "meta.jsonl").read_text().splitlines()]
        assert [item.image_path.name for item in bench.items] == [m["image"] for m in meta]
        assert all(item.image_path.is_file() and item.correct != item.incorrect for item in bench.items)
    multi30k = tmp_path / "multi30k"
    for lang in MULTI30K_LANGS:
        bench = load_multi30k_task1(multi30k, MULTI30K_SPLIT, lang, multi30k / "images")
        assert len(bench.items) == 4 and all(item.image_path.is_file() for item in bench.items)
        assert all(item.source != item.references[0] for item in bench.items)  # English source, {lang} reference
    bench = load_coco_karpathy(tmp_path / "coco" / "dataset_coco.json", tmp_path / "coco")
    assert len(bench.items) == 4 and all(len(item.references) == N_TEMPLATES for item in bench.items)

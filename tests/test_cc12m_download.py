"""Tests of florenz_lib.cc12m.download: img2dataset against a local HTTP server (CPU, ~half a minute).

img2dataset starts a few Python processes per call (seconds each), so the slice is
downloaded once per module and the tests read its outputs.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow.parquet as pq

import pytest
from PIL import Image

from cc12m_fixtures import serve_directory, url_key, write_cc12m_fixture
from florenz_lib.cc12m.download import download_slice, image_split, slice_urls, stable_unit_hash, url_slice

SEED = 7
IMAGE_SIZE = 32


def world_cfg(fixture, **overrides) -> dict:
    cfg = {
        "tsv": str(fixture.tsv), "descriptions": str(fixture.descriptions), "descriptions_key": "url",
        "n_slices": 1, "image_size": IMAGE_SIZE, "resize_mode": "center_crop", "max_image_pixels": 100 * 100,
        "heldout_fraction": 0.3, "download": {"processes": 1, "threads": 4, "timeout": 5, "retries": 0},
        "caption_min_chars": 3, "caption_max_chars": 60,
    }
    return {**cfg, **overrides}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("cc12m")
    with serve_directory(root) as base_url:
        yield root, write_cc12m_fixture(root, base_url, 12, caption_min_chars=3, caption_max_chars=60)


def _outputs(directory):
    return directory / "images.parquet", directory / "captions.parquet", directory / "stats.json"


@pytest.fixture(scope="module")
def downloaded(served):
    root, fixture = served
    out = root / "out"
    stats = download_slice(world_cfg(fixture), SEED, 0, root / "work", *_outputs(out))
    return fixture, root, out, stats


def test_slice_urls_scatters_lines_and_counts_bad_ones(tmp_path):
    lines = ["http://a/0\tx", "no tab", "http://a/2\tx", "http://a/0\tagain", "http://a/4\ty\tz",
             "\tempty url", "http://a/6\tx", "http://a/2\tagain", "http://a/8\tx"]
    tsv = tmp_path / "cc12m.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    whole = slice_urls(tsv, 0, 1)
    assert whole.urls == ["http://a/0", "http://a/2", "http://a/6", "http://a/8"]
    assert whole.lines == 9 and whole.dropped == {"malformed_line": 3, "duplicate_url": 2}

    parts = [slice_urls(tsv, i, 3) for i in range(3)]
    # every line is counted by one slice; every copy of a url lands in one slice, so the slices
    # together keep each url once and count the same drops as the whole
    assert sum(p.lines for p in parts) == 9
    assert sorted(u for p in parts for u in p.urls) == whole.urls
    assert sum((p.dropped for p in parts), Counter()) == whole.dropped
    for p, i in zip(parts, range(3)):
        assert all(url_slice(u, 3) == i for u in p.urls)
    # malformed lines (1 "no tab", 4 three fields, 5 empty url) go by line number
    assert [p.dropped["malformed_line"] for p in parts] == [0, 2, 1]
    with pytest.raises(ValueError, match="slice_index"):
        slice_urls(tsv, 3, 3)


def test_heldout_assignment_is_stable_and_close_to_the_fraction():
    urls = [f"http://img.example/{i}.jpg" for i in range(4000)]
    splits = [image_split(u, SEED, 0.1) for u in urls]
    assert splits == [image_split(u, SEED, 0.1) for u in reversed(urls)][::-1]  # order-free, repeatable
    assert 0.08 < splits.count("heldout") / len(urls) < 0.12
    assert splits != [image_split(u, SEED + 1, 0.1) for u in urls]  # the seed matters
    # A larger fraction only adds held-out images: the test split grows, never reshuffles.
    wider = [image_split(u, SEED, 0.2) for u in urls]
    assert all(w == "heldout" for s, w in zip(splits, wider) if s == "heldout")
    assert all(0.0 <= stable_unit_hash(u, SEED) < 1.0 for u in urls[:100])


def test_good_rows_come_out_resized_with_their_descriptions(downloaded):
    fixture, _, out, stats = downloaded
    images = pq.read_table(out / "images.parquet").to_pylist()
    assert [row["url"] for row in images] == sorted(fixture.good_urls, key=url_key)
    assert [row["key"] for row in images] == sorted(row["key"] for row in images)
    for row in images:
        assert row["key"] == url_key(row["url"])
        assert row["split"] == image_split(row["url"], SEED, 0.3)
        picture = Image.open(io.BytesIO(row["png"]))
        assert picture.format == "JPEG" and picture.size == (IMAGE_SIZE, IMAGE_SIZE)
        picture.convert("RGB").load()

    captions = pq.read_table(out / "captions.parquet").to_pylist()
    by_key = {url_key(url): text for url, text in fixture.descriptions_by_url.items()}
    assert [c["key"] for c in captions] == [row["key"] for row in images]
    assert all(c["lang"] == "en" and c["text"] == by_key[c["key"]] for c in captions)


def test_every_bad_row_is_counted_under_its_reason(downloaded):
    fixture, _, out, stats = downloaded
    assert stats["dropped"] == fixture.drops
    assert stats["in"] == fixture.lines
    assert stats["out"] == len(fixture.good_urls)
    assert stats["in"] == stats["out"] + sum(stats["dropped"].values())
    assert stats["splits"]["train"] + stats["splits"]["heldout"] == stats["out"]
    assert json.loads((out / "stats.json").read_text()) == stats
    # img2dataset was asked only for rows with a usable description.
    assert stats["img2dataset"]["count"] == len(fixture.good_urls) + 4


def test_rerun_resumes_and_joining_by_key_gives_the_same_output(downloaded, served):
    fixture, root, out, stats = downloaded
    again = root / "again"
    # The same url list: img2dataset's finished shards in work/ are reused, nothing is fetched.
    with_key = download_slice(world_cfg(fixture, descriptions_key="key"), SEED, 0, root / "work", *_outputs(again))
    assert with_key == stats
    for name in ("images.parquet", "captions.parquet"):
        assert pq.read_table(again / name).equals(pq.read_table(out / name))
    assert len(list((root / "work").glob("img2dataset-*.log"))) == 1  # one img2dataset run for both


def test_slices_partition_the_tsv(served, downloaded, tmp_path):
    fixture, root, out, stats = downloaded
    lines = fixture.tsv.read_text().splitlines()
    large = next(i for i, line in enumerate(lines) if "/large.png" in line)
    # The slice holding the 200x200 image, with a limit of exactly its area: it passes (img2dataset
    # drops an image only if its original width * height exceeds max_image_area).
    cfg = world_cfg(fixture, n_slices=2, max_image_pixels=200 * 200)
    large_url = lines[large].split("\t")[0]
    half = download_slice(cfg, SEED, url_slice(large_url, 2), tmp_path / "work", *_outputs(tmp_path))
    mine = slice_urls(fixture.tsv, url_slice(large_url, 2), 2)
    assert half["in"] == mine.lines == half["out"] + sum(half["dropped"].values())
    assert "image_too_large" not in half["dropped"]
    rows = pq.read_table(tmp_path / "images.parquet").to_pylist()
    assert {row["url"] for row in rows} <= set(mine.urls)
    assert lines[large].split("\t")[0] in {row["url"] for row in rows}
    whole = {row["key"]: row for row in pq.read_table(out / "images.parquet").to_pylist()}
    shared = [row for row in rows if row["key"] in whole]
    assert shared  # good images of this slice: same key, split and bytes as in the single-slice run
    for row in shared:
        assert row["split"] == whole[row["key"]]["split"] and row["png"] == whole[row["key"]]["png"]


def test_missing_inputs_name_the_config_key(served, tmp_path):
    _, fixture = served
    with pytest.raises(FileNotFoundError, match=r"cc12m\.tsv.*nothing\.tsv"):
        download_slice(world_cfg(fixture, tsv=str(tmp_path / "nothing.tsv")), SEED, 0, tmp_path, *_outputs(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"cc12m\.descriptions.*nothing\.parquet"):
        download_slice(world_cfg(fixture, descriptions=str(tmp_path / "nothing.parquet")), SEED, 0, tmp_path,
                       *_outputs(tmp_path))
    assert not (tmp_path / "images.parquet").exists()

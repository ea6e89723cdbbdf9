"""Download one slice of CC12M with img2dataset and join it with the English descriptions.

A line of the CC12M TSV (url<TAB>caption, no header) belongs to slice `url_slice(url, n_slices)`
(a hash of the url: every copy of a url lands in one slice, so duplicates are found whatever
the slicing; a malformed line, which has no usable url, to slice line_number % n_slices). A
slice's rows are filtered in this order, each drop counted under its reason:
  malformed_line       not exactly two tab-separated fields, or an empty url
  duplicate_url        a url already seen earlier in the slice
  missing_description  no row for the url (or its key) in the descriptions parquet
  empty_caption        the description is empty or whitespace
  caption_too_short / caption_too_long   outside [caption_min_chars, caption_max_chars] after strip
  download_failed      img2dataset could not fetch it (HTTP error, refused, timeout)
  image_too_large      the ORIGINAL image has more than max_image_pixels pixels
  decode_failed        img2dataset could not decode or resize it
  not_returned         img2dataset wrote no record for it although its shard finished
Descriptions are checked before downloading, so no image is fetched only to be dropped.

The CC12M alt-text caption is not used: the English text of an image is its generated
description. Images keep img2dataset's JPEG encoding (resized to image_size); the column is
called `png` like the synthetic world's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io import replacing, write_json, write_parquet

log = logging.getLogger(__name__)

IMAGES_SCHEMA = pa.schema([("key", pa.string()), ("split", pa.string()), ("png", pa.binary()), ("url", pa.string())])
CAPTIONS_SCHEMA = pa.schema([("key", pa.string()), ("lang", pa.string()), ("text", pa.string())])
ENCODE_FORMAT = "jpg"
SAMPLES_PER_SHARD = 10_000  # img2dataset shard: the unit of resumption and of memory when reading back
DESCRIPTION_BATCH_ROWS = 65_536


def url_key(url: str) -> str:
    """The stable image key: sha1(url) as hex, first 16 characters."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]


def stable_unit_hash(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by (text, seed): sha1 of f"{seed}:{text}", first 8 bytes."""
    digest = hashlib.sha1(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def image_split(url: str, seed: int, heldout_fraction: float) -> str:
    """"heldout" iff stable_unit_hash(url, seed) < heldout_fraction, else "train".

    Depends on nothing but the url and the seed, so it does not change with n_slices.
    """
    return "heldout" if stable_unit_hash(url, seed) < heldout_fraction else "train"


@dataclass
class SliceUrls:
    urls: list[str]  # unique, in TSV order
    lines: int  # TSV lines of the slice
    dropped: Counter = field(default_factory=Counter)


def url_slice(url: str, n_slices: int) -> int:
    """The slice of a url: sha1(url) modulo n_slices (independent of the seed and of line order)."""
    return int(hashlib.sha1(url.encode("utf-8")).hexdigest(), 16) % n_slices


def slice_urls(tsv_path, slice_index: int, n_slices: int) -> SliceUrls:
    """Stream the TSV and keep the lines of slice `slice_index`: a well-formed line iff
    url_slice(url) == slice_index, a malformed one (not exactly 2 tab-separated fields, or an
    empty url) iff its 0-based line number % n_slices == slice_index. Malformed lines and
    repeated urls are counted, not fatal; every line is counted by exactly one slice.
    """
    if not 0 <= slice_index < n_slices:
        raise ValueError(f"slice_index {slice_index} is outside [0, n_slices={n_slices})")
    tsv_path = Path(tsv_path)
    if not tsv_path.is_file():
        raise FileNotFoundError(f"cc12m.tsv: no such file {tsv_path}")
    result = SliceUrls(urls=[], lines=0)
    seen = set()
    with open(tsv_path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle):
            fields = line.rstrip("\r\n").split("\t")
            url = fields[0].strip()
            malformed = len(fields) != 2 or not url
            if (number % n_slices if malformed else url_slice(url, n_slices)) != slice_index:
                continue
            result.lines += 1
            if malformed:
                result.dropped["malformed_line"] += 1
            elif url in seen:
                result.dropped["duplicate_url"] += 1
            else:
                seen.add(url)
                result.urls.append(url)
    return result


def _read_descriptions(path, join_key: str, wanted: dict[str, str]) -> dict[str, str]:
    """Descriptions of the wanted join values ({join value: url}), streamed; returns {url: text}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cc12m.descriptions: no such file {path}")
    parquet = pq.ParquetFile(path)
    missing = [c for c in (join_key, "description") if c not in parquet.schema_arrow.names]
    if missing:
        raise KeyError(f"cc12m.descriptions {path}: missing column(s) {missing}; present: {parquet.schema_arrow.names}")
    found: dict[str, str] = {}
    value_set = pa.array(list(wanted), type=parquet.schema_arrow.field(join_key).type)  # string or large_string
    for batch in parquet.iter_batches(batch_size=DESCRIPTION_BATCH_ROWS, columns=[join_key, "description"]):
        # Filtered in Arrow: the file covers all of CC12M, a slice wants 1 / n_slices of it.
        batch = batch.filter(pc.is_in(batch.column(0), value_set=value_set))
        for value, text in zip(*(batch.column(i).to_pylist() for i in range(2))):
            url = wanted[value]
            text = text or ""
            if found.setdefault(url, text) != text:
                raise ValueError(f"cc12m.descriptions {path}: two different descriptions for {join_key}={value!r}")
    return found


def _caption_drop(text: str | None, min_chars: int, max_chars: int) -> str | None:
    if text is None:
        return "missing_description"
    if not text:
        return "empty_caption"
    if len(text) < min_chars:
        return "caption_too_short"
    if len(text) > max_chars:
        return "caption_too_long"
    return None


def _download_drop(status: str, error_message: str | None) -> str | None:
    """Map img2dataset's per-sample status and error message to our drop reason."""
    if status == "success":
        return None
    if status == "failed_to_download":
        return "download_failed"
    if error_message == "image area too large":  # img2dataset.resizer's exact message
        return "image_too_large"
    return "decode_failed"


def _fingerprint(urls: list[str], params: dict) -> str:
    # img2dataset resumes by shard number; a changed url list or resize setting must not
    # pick up shards written for another one, so each gets its own output folder.
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode())
    for url in urls:
        digest.update(url.encode("utf-8") + b"\n")
    return digest.hexdigest()[:12]


# img2dataset runs in a child interpreter started with -c: its multiprocessing uses "spawn",
# which re-imports the caller's __main__ (a Snakemake script would download again in every
# worker), and it installs a SIGINT handler that only works in a main thread.
_IMG2DATASET_MAIN = "import json, sys; from img2dataset import download; download(**json.loads(sys.argv[1]))"


def _run_img2dataset(urls: list[str], world_cfg: dict, work_dir: Path) -> Path:
    """Download `urls` into a parquet img2dataset output folder under work_dir; return the folder."""
    download = world_cfg.get("download", {})
    params = {
        "image_size": int(world_cfg["image_size"]),
        "resize_mode": world_cfg["resize_mode"],
        "max_image_area": int(world_cfg["max_image_pixels"]),
        "encode_format": ENCODE_FORMAT,
        "number_sample_per_shard": SAMPLES_PER_SHARD,
    }
    fingerprint = _fingerprint(urls, params)
    output = work_dir / f"img2dataset-{fingerprint}"
    url_list = work_dir / f"urls-{fingerprint}.parquet"
    if not url_list.is_file():
        write_parquet(pa.table({"url": urls}), url_list)
    arguments = {
        **params,
        "url_list": str(url_list),
        "output_folder": str(output),
        "input_format": "parquet",
        "url_col": "url",
        "output_format": "parquet",
        "processes_count": int(download.get("processes", 1)),
        "thread_count": int(download.get("threads", 16)),
        "timeout": int(download.get("timeout", 10)),
        "retries": int(download.get("retries", 0)),
        "incremental_mode": "incremental",
        # An empty list turns the X-Robots-Tag check off (CC12M's urls are taken as published).
        "disallowed_header_directives": [],
        "distributor": "multiprocessing",
        "enable_wandb": False,
        "extract_exif": False,
        "compute_hash": None,
    }
    # albumentations (imported by img2dataset) asks PyPI for a newer version unless told not to.
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    log_path = work_dir / f"img2dataset-{fingerprint}.log"
    if _finished_shards(output) == _n_shards(urls):
        # Every shard is done: skip img2dataset's process start-up (it would find nothing to do).
        log.info("img2dataset: all shards of %s are done", output)
        return output
    log.info("img2dataset: %d urls -> %s (log %s)", len(urls), output, log_path)
    with open(log_path, "a", encoding="utf-8") as log_file:
        done = subprocess.run([sys.executable, "-c", _IMG2DATASET_MAIN, json.dumps(arguments)],
                              stdout=log_file, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"img2dataset exited with status {done.returncode}; see {log_path}")
    return output


def _n_shards(urls: list[str]) -> int:
    return -(-len(urls) // SAMPLES_PER_SHARD)


def _finished_shards(output: Path) -> int:
    # img2dataset writes a shard's <id>_stats.json after its parquet is closed.
    return len(list(output.glob("*_stats.json")))


def _img2dataset_stats(output: Path) -> dict:
    total = Counter()
    status = Counter()
    for path in sorted(output.glob("*_stats.json")):
        stats = json.loads(path.read_text())
        total.update({k: stats[k] for k in ("count", "successes", "failed_to_download", "failed_to_resize")})
        status.update(stats["status_dict"])
    return {**total, "status": dict(status)}


def download_slice(world_cfg: dict, seed: int, slice_index: int, work_dir, out_images_parquet,
                   out_en_captions_parquet, out_stats_json) -> dict:
    """Download slice `slice_index` of cc12m.tsv and write its images, English captions and stats.

    images parquet: key, split, png (JPEG bytes), url, sorted by key; captions parquet: key,
    lang ("en"), text (the stripped description), sorted by key; stats json: {"in", "out",
    "dropped": {reason: n}, "splits", "img2dataset"} with in = out + sum(dropped). work_dir
    keeps img2dataset's output, so a rerun resumes finished shards.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    n_slices = int(world_cfg["n_slices"])
    sliced = slice_urls(world_cfg["tsv"], slice_index, n_slices)
    dropped = Counter(sliced.dropped)

    join_key = world_cfg.get("descriptions_key", "url")
    if join_key not in ("url", "key"):
        raise ValueError(f"cc12m.descriptions_key: must be 'url' or 'key', got {join_key!r}")
    keys = {url: url_key(url) for url in sliced.urls}
    wanted = {url: url for url in sliced.urls} if join_key == "url" else {key: url for url, key in keys.items()}
    descriptions = _read_descriptions(world_cfg["descriptions"], join_key, wanted)

    captions: dict[str, str] = {}
    for url in sliced.urls:
        text = descriptions.get(url)
        text = None if text is None else text.strip()
        reason = _caption_drop(text, int(world_cfg["caption_min_chars"]), int(world_cfg["caption_max_chars"]))
        if reason:
            dropped[reason] += 1
        else:
            captions[url] = text

    # Sorted by key, img2dataset's shards come back in key order: the output is written
    # shard by shard, sorted, without holding the slice's images in memory.
    to_download = sorted(captions, key=keys.__getitem__)
    output = _run_img2dataset(to_download, world_cfg, work_dir) if to_download else None
    stats_i2d = _img2dataset_stats(output) if output else {}
    log.info("slice %d: img2dataset stats %s", slice_index, stats_i2d)
    if output and _finished_shards(output) < _n_shards(to_download):
        # img2dataset gives up on a shard after max_shard_retry failures and moves on.
        raise RuntimeError(f"img2dataset finished {_finished_shards(output)} of {_n_shards(to_download)} "
                           f"shards in {output}; rerun to resume the others")

    heldout_fraction = float(world_cfg["heldout_fraction"])
    splits = Counter()
    out_keys: list[str] = []
    returned = set()
    shards = sorted(output.glob("*.parquet")) if output else []
    with replacing(out_images_parquet) as tmp:
        with pq.ParquetWriter(tmp, IMAGES_SCHEMA, compression="zstd") as writer:
            for shard in shards:
                table = pq.read_table(shard, columns=["url", "status", "error_message", ENCODE_FORMAT])
                rows = sorted(zip(*(table.column(c).to_pylist() for c in table.column_names)),
                              key=lambda row: keys[row[0]])
                out = {"key": [], "split": [], "png": [], "url": []}
                for url, status, error_message, image in rows:
                    if url not in captions or url in returned:
                        raise RuntimeError(f"{shard}: url {url!r} was not asked for, or came back twice")
                    returned.add(url)
                    reason = _download_drop(status, error_message)
                    if reason:
                        dropped[reason] += 1
                        continue
                    split = image_split(url, seed, heldout_fraction)
                    splits[split] += 1
                    for name, value in (("key", keys[url]), ("split", split), ("png", image), ("url", url)):
                        out[name].append(value)
                out_keys.extend(out["key"])
                writer.write_table(pa.table(out, schema=IMAGES_SCHEMA))
    if len(returned) != len(to_download):
        dropped["not_returned"] += len(to_download) - len(returned)
        log.warning("slice %d: img2dataset wrote no record for %d urls", slice_index, len(to_download) - len(returned))

    url_of = {key: url for url, key in keys.items()}
    write_parquet(pa.table({"key": out_keys, "lang": ["en"] * len(out_keys),
                            "text": [captions[url_of[k]] for k in out_keys]}, schema=CAPTIONS_SCHEMA),
                  out_en_captions_parquet)
    stats = {
        "slice": slice_index,
        "n_slices": n_slices,
        "in": sliced.lines,
        "out": len(out_keys),
        "dropped": dict(sorted(dropped.items())),
        "splits": dict(sorted(splits.items())),
        "img2dataset": stats_i2d,
    }
    if stats["in"] != stats["out"] + sum(dropped.values()):
        raise AssertionError(f"slice {slice_index}: counts do not reconcile: {stats}")
    write_json(stats, out_stats_json)
    log.info("slice %d: %d lines -> %d images, dropped %s", slice_index, stats["in"], stats["out"], stats["dropped"])
    return stats

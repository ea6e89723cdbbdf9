"""data/cc12m/stats.json: every cc12m stage's counts in one file, checked to reconcile across stages.

Each stage's own stats reconcile within the stage (in = out + dropped, by reason); here the stages
are chained: what one stage wrote is what the next one read.
"""
from __future__ import annotations

import logging
from collections import Counter

from ..data.shards import STATS_FILE
from ..io import read_json, write_json
from ..paths import Layout

log = logging.getLogger(__name__)


def _summed(stats: list[dict]) -> dict:
    dropped = Counter()
    for s in stats:
        dropped.update(s["dropped"])
    return {"in": sum(s["in"] for s in stats), "out": sum(s["out"] for s in stats), "dropped": dict(sorted(dropped.items()))}


def cross_stage_checks(downloads: list[dict], captions: list[dict], corpora: list[dict], alignment: dict[str, dict],
                       shards: dict, test: dict) -> list[dict]:
    """Each check: what it is, the two counts that must be equal, and whether they are."""
    heldout_images = sum(d["splits"].get("heldout", 0) for d in downloads)
    corpus_out = sum(c["out"] for c in corpora)
    checks = [
        ("downloaded images = images read by the shards stage", sum(d["out"] for d in downloads),
         shards["images"]["in"]),
        ("downloaded images = English captions translated", sum(d["out"] for d in downloads),
         sum(c["langs"]["en"]["in"] for c in captions)),
        ("held-out downloaded images = held-out images of the test splits", heldout_images, test["heldout_images"]),
        ("train images of the slices = training shard rows", sum(d["splits"].get("train", 0) for d in downloads),
         shards["rows"]),
    ]
    for part, split_stats in alignment.items():
        checks.append((f"corpus pairs written = pairs read by the {part} alignment (its part + the other part)",
                       corpus_out, split_stats["sentences_in"] + split_stats["other_split_pairs"]))
        checks.append((f"corpus {part} pairs = sentences of the {part} alignment",
                       sum(c["splits"][part] for c in corpora), split_stats["sentences_in"]))
    checks.append(("aligned train pairs = aligned pairs read by the shards stage", alignment["train"]["aligned"],
                   shards["aligned_pairs"]["in"]))
    return [{"check": name, "left": int(left), "right": int(right), "ok": int(left) == int(right)}
            for name, left, right in checks]


def gather_cc12m_stats(layout: Layout, slices: list[int], corpus_langs: list[str]) -> dict:
    """Read every stage's stats, chain them and write layout.cc12m_stats(); AssertionError naming every count
    that does not reconcile (and nothing written)."""
    downloads = [read_json(layout.cc12m_images(i, "_stats.json")) for i in slices]
    captions = [read_json(layout.cc12m_captions(i, "_stats.json")) for i in slices]
    corpora = [read_json(layout.cc12m_corpus_stats(lang)) for lang in corpus_langs]
    alignment = {part: read_json(layout.cc12m_alignment_stats(part)) for part in ("train", "heldout")}
    shards = read_json(f"{layout.shards()}/{STATS_FILE}")
    test = read_json(layout.test(STATS_FILE))
    checks = cross_stage_checks(downloads, captions, corpora, alignment, shards, test)
    stats = {
        "tsv_lines": sum(d["in"] for d in downloads),
        "download": _summed(downloads) | {"splits": dict(sum((Counter(d["splits"]) for d in downloads), Counter()))},
        "captions": {lang: _summed([c["langs"][lang] for c in captions if lang in c["langs"]])
                     for lang in sorted({lang for c in captions for lang in c["langs"]})},
        "corpus": {c["lang"]: {k: c[k] for k in ("in", "out", "dropped", "splits")} for c in corpora},
        "alignment": {part: {k: s[k] for k in ("sentences_in", "aligned", "dropped", "other_split_pairs")}
                      for part, s in alignment.items()},
        "shards": {k: shards[k] for k in ("images", "captions", "aligned_pairs", "rows", "annotations")},
        "test_splits": {split: s["rows"] for split, s in test["splits"].items()},
        "checks": checks,
    }
    failed = [c for c in checks if not c["ok"]]
    if failed:
        raise AssertionError(f"cc12m counts do not reconcile across stages: {failed}")
    write_json(stats, layout.cc12m_stats())
    log.info("cc12m: %d TSV lines -> %d images, %d training rows; %d cross-stage checks reconcile",
             stats["tsv_lines"], stats["download"]["out"], shards["rows"], len(checks))
    return stats

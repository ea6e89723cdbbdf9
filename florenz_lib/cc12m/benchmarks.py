"""The cc12m world's benchmark files: the configured local XM3600 copy, checked with the public loader and
laid out as the evaluation rules read it in both worlds (data/benchmarks/xm3600/{captions.jsonl, images/}).
The images are symlinked, not copied (XM3600 is 3600 full-size photos)."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..downstream.benchmarks import load_xm3600
from ..io import write_json
from ..paths import IMAGES_DIR, XM3600_CAPTIONS, XM3600_DIR

log = logging.getLogger(__name__)


def import_xm3600(captions_jsonl: str, images_dir: str, langs: list[str], out_dir: str) -> dict:
    """Write out_dir/xm3600 (captions.jsonl copied, every listed image linked) and out_dir/stats.json.
    Every language in `langs` must have captions for every image: the loader's error names the file and
    line otherwise. out_dir/xm3600 appears whole or not at all."""
    per_lang = {lang: load_xm3600(captions_jsonl, images_dir, lang) for lang in langs}
    images = sorted({item.image_path for bench in per_lang.values() for item in bench.items})
    target = Path(out_dir) / XM3600_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{XM3600_DIR}-"))
    try:
        shutil.copyfile(captions_jsonl, staging / XM3600_CAPTIONS)
        (staging / IMAGES_DIR).mkdir()
        for image in images:
            os.symlink(os.path.abspath(image), staging / IMAGES_DIR / Path(image).name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    stats = {"xm3600": {"source": os.path.abspath(captions_jsonl), "images": len(images),
                        "langs": {lang: len(bench.items) for lang, bench in per_lang.items()}}}
    write_json(stats, Path(out_dir) / "stats.json")
    log.info("XM3600: %d images, languages %s", len(images), sorted(per_lang))
    return stats

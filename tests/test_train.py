import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from florenz_lib.models.florenz import DECODER_START
from florenz_lib.models.configs import num_image_tokens
from florenz_lib.models.freezing import apply_freezing_policy
from florenz_lib.models.inputs import Seq2SeqCollator
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.train.balancing import TASK_LANGUAGE_KEYS, OnlineBalancer
from florenz_lib.train.data import BalancedImageStream
from florenz_lib.train.loop import OptimConfig, make_optimizer, train_loop, warmup_cosine
from florenz_lib.train.runs import batch_ce


def _annotations(keys):
    return [{"task": k.split("-")[0], "lang": k.split("-")[1], "source": "a red circle" if k.startswith("tr") else "",
             "target": f"text {k}"} for k in keys]


def test_balancer_reaches_equal_task_language_shares():
    balancer = OnlineBalancer(seed=0)
    # every image has both captions, and translations in a varying subset of languages
    rng = np.random.default_rng(0)
    for _ in range(7000):
        translations = [k for k in TASK_LANGUAGE_KEYS[2:] if rng.random() < 0.5]
        balancer.choose(_annotations(["caption-en", "caption-de", *translations]))
    shares = np.array([balancer.counts[k] for k in TASK_LANGUAGE_KEYS]) / 7000
    assert np.abs(shares - 1 / 7).max() < 0.01


def test_balancer_without_balancing_would_skew():
    # the same candidates drawn uniformly give captions far more than their share: balancing matters
    rng = np.random.default_rng(0)
    counts = Counter()
    for _ in range(7000):
        candidates = ["caption-en", "caption-de", *[k for k in TASK_LANGUAGE_KEYS[2:] if rng.random() < 0.5]]
        counts[candidates[rng.integers(len(candidates))]] += 1
    assert counts["caption-en"] / 7000 > 0.2


def test_balancer_rejects_unknown_keys():
    with pytest.raises(ValueError, match="no annotation"):
        OnlineBalancer(seed=0).choose(_annotations(["caption-fr"]))


def test_warmup_cosine_schedule_and_weight_decay_groups():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = make_optimizer(torch.nn.Linear(2, 2), OptimConfig(lr=1.0))
    scheduler = warmup_cosine(torch.optim.SGD([param], lr=1.0), warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    # weight decay only on >= 2-D weights
    decays = {p.ndim: g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays == {2: 0.01, 1: 0.0}


def _png(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _train_losses(base_models, tokenizers, tmp_path, name):
    torch.manual_seed(0)
    model = florenz_from_florence2_and_gemma2(*base_models)
    apply_freezing_policy(model)
    rows = [{"key": f"img-{i}", "png": _png(i),
             "annotations": _annotations(["caption-en", "caption-de", "translation-es", "translation-zh"])}
            for i in range(6)]
    stream = BalancedImageStream(rows, seed=3)
    collate = Seq2SeqCollator(*tokenizers, num_image_tokens(model.config.florence2_config().vision_config, 32),
                              24, 16, decoder_start_id=DECODER_START)
    return train_loop(model, lambda: collate(stream.next_examples(4)), lambda m, b: batch_ce(m, b).mean(), 4, 4,
                      OptimConfig(lr=1e-2, warmup_steps=1), str(tmp_path / f"{name}.csv"), desc=name)


def test_training_is_deterministic_and_logs_every_step(base_models, tokenizers, tmp_path):
    first = _train_losses(base_models, tokenizers, tmp_path, "a")
    second = _train_losses(base_models, tokenizers, tmp_path, "b")
    assert first == second
    log = (tmp_path / "a.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,samples_per_s,seen_samples" and len(log) == 5
    assert log[-1].startswith("4,") and log[-1].endswith(",16")

import io
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from florenz_lib.downstream.finetune import finetune_run
from florenz_lib.models.florenz import DECODER_START
from florenz_lib.models.configs import num_image_tokens
from florenz_lib.models.freezing import apply_freezing_policy
from florenz_lib.models.inputs import Example, Seq2SeqCollator, png_to_tensor
from florenz_lib.models.loss import IGNORE_INDEX
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.train.balancing import TASK_LANGUAGE_KEYS, OnlineBalancer
from florenz_lib.train.data import BalancedImageStream
from florenz_lib.train.loop import OptimConfig, make_optimizer, train_loop, warmup_cosine
from florenz_lib.train.runs import LOSS_REDUCTIONS, batch_ce, train_run


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


def _tiny_florenz(base_models):
    torch.manual_seed(0)
    model = florenz_from_florence2_and_gemma2(*base_models)
    apply_freezing_policy(model)
    return model


def _collator(model, tokenizers):
    return Seq2SeqCollator(*tokenizers, num_image_tokens(model.config.florence2_config().vision_config, 32),
                           24, 16, decoder_start_id=DECODER_START)


def _train_losses(base_models, tokenizers, tmp_path, name):
    model = _tiny_florenz(base_models)
    rows = [{"key": f"img-{i}", "png": _png(i),
             "annotations": _annotations(["caption-en", "caption-de", "translation-es", "translation-zh"])}
            for i in range(6)]
    stream = BalancedImageStream(rows, seed=3)
    collate = _collator(model, tokenizers)
    return train_loop(model, lambda: collate(stream.next_examples(4)), lambda m, b: batch_ce(m, b).mean(), 4, 4,
                      OptimConfig(lr=1e-2, warmup_steps=1), str(tmp_path / f"{name}.csv"), desc=name)


def test_training_is_deterministic_and_logs_every_step(base_models, tokenizers, tmp_path):
    first = _train_losses(base_models, tokenizers, tmp_path, "a")
    second = _train_losses(base_models, tokenizers, tmp_path, "b")
    assert first == second
    log = (tmp_path / "a.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,samples_per_s,seen_samples" and len(log) == 5
    assert log[-1].startswith("4,") and log[-1].endswith(",16")


# targets of 3 to 10 decoder tokens, all within the training limit of 16
UNEQUAL_TARGETS = ["a", "two red circles left of a blue square", "a photo of a small green star", "there is a big bow"]


def _unequal_batch_examples():
    return [Example(png_to_tensor(_png(i)), "caption", "en", "", t) for i, t in enumerate(UNEQUAL_TARGETS)]


def _loop_step(base_models, tokenizers, tmp_path, reduction, micro):
    """Logged loss and gradients of one train_loop step over the 4 examples, in micro-batches of `micro`."""
    model = _tiny_florenz(base_models)
    collate, examples = _collator(model, tokenizers), _unequal_batch_examples()
    batches = iter([collate(examples[i:i + micro]) for i in range(0, len(examples), micro)])
    compute_loss, count_units = LOSS_REDUCTIONS[reduction]
    [loss] = train_loop(model, lambda: next(batches), compute_loss, 1, len(examples),
                        OptimConfig(lr=1e-3, grad_clip=1e9), str(tmp_path / f"{reduction}-{micro}.csv"),
                        count_units=count_units, grad_accum=len(examples) // micro)
    return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def _direct_step(base_models, tokenizers, reduction):
    """The single-batch loss written out, and its gradients."""
    model = _tiny_florenz(base_models).train()
    batch = _collator(model, tokenizers)(_unequal_batch_examples())
    labels = batch.pop("labels")
    token_ce = F.cross_entropy(model(**batch).logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                               reduction="none")
    tokens = (labels != IGNORE_INDEX).sum(dim=1)
    assert len(set(tokens.tolist())) == len(UNEQUAL_TARGETS)  # the reductions differ only then
    loss = token_ce.sum() / tokens.sum() if reduction == "token_mean" else (token_ce.sum(dim=1) / tokens).mean()
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("reduction", ["token_mean", "sample_mean"])
def test_accumulated_step_has_the_gradient_of_the_whole_batch_loss(base_models, tokenizers, tmp_path, reduction):
    expected_loss, expected = _direct_step(base_models, tokenizers, reduction)
    for micro in (1, 2, 4):  # 4, 2 and 1 accumulation steps
        loss, grads = _loop_step(base_models, tokenizers, tmp_path, reduction, micro)
        assert loss == pytest.approx(expected_loss, rel=1e-6)  # a few float32 ulps
        assert grads.keys() == expected.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[name], rtol=0, atol=1e-6, msg=name)


def test_token_mean_weighs_long_targets_more_than_sample_mean(base_models, tokenizers, tmp_path):
    token_loss, token_grads = _loop_step(base_models, tokenizers, tmp_path, "token_mean", 2)
    sample_loss, sample_grads = _loop_step(base_models, tokenizers, tmp_path, "sample_mean", 2)
    assert abs(token_loss - sample_loss) > 1e-3
    assert max((token_grads[n] - sample_grads[n]).abs().max().item() for n in token_grads) > 1e-3


def test_unknown_loss_reduction_is_rejected_by_name(tmp_path):
    with pytest.raises(ValueError, match="'per_batch'"):
        train_run("init", "shards", "tok", {}, 1, 32, 24, 16, 0, str(tmp_path), loss_reduction="per_batch")
    with pytest.raises(ValueError, match="'tokens'"):
        finetune_run("pretrained", "mix", "tok", {"steps": 1, "image_size": 32}, 24, 16, 0, str(tmp_path),
                     loss_reduction="tokens")

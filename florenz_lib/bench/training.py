"""Training: the project's train_loop against transformers' Trainer on the same model, the same collated
batches and the same optimizer settings; and the data loader (BalancedImageStream + RankBatches +
collation) against what the trainer consumes."""
from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

import torch

from ..models.florenz import load_florenz
from ..models.freezing import apply_freezing_policy
from ..train.data import BalancedImageStream, RankBatches
from ..train.loop import OptimConfig, train_loop
from ..train.runs import batch_ce, model_collator
from .core import Row, make_row, paired_seconds
from .fixtures import MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS, BenchData

log = logging.getLogger(__name__)

OPTIM = OptimConfig(lr=1e-3, weight_decay=0.01, warmup_steps=2, grad_clip=1.0)


def _hf_trainer(model, batches: list[dict], steps: int, out_dir: str):
    """A transformers Trainer that takes the pre-collated batches one per step (the collator unwraps a
    batch of one) and minimises the same loss; no eval, saving, logging or progress bar."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    class CETrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return batch_ce(model, inputs).mean()

    args = TrainingArguments(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=1,
                             learning_rate=OPTIM.lr, weight_decay=OPTIM.weight_decay, warmup_steps=OPTIM.warmup_steps,
                             lr_scheduler_type="cosine", max_grad_norm=OPTIM.grad_clip, optim="adamw_torch",
                             report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False,
                             remove_unused_columns=False, seed=0)
    trainer = CETrainer(model=model, args=args, train_dataset=batches, data_collator=lambda items: items[0])
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict to stdout
    return trainer


def bench_training(data: BenchData, batch_size: int, steps: int, repeats: int) -> list[Row]:
    """Rows: trainer samples/s (ours vs Trainer), loader samples/s vs the trainer's consumption."""
    torch.set_num_threads(1)
    init = load_florenz(str(data.model_dir))
    apply_freezing_policy(init)
    collate = model_collator(init, str(data.tokenizers_dir), data.image_size, MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS)

    def new_loader() -> RankBatches:
        return RankBatches(BalancedImageStream(data.train_rows, seed=0), collate, batch_size)

    first = new_loader()
    batches = [first() for _ in range(steps)]
    samples = steps * batch_size
    with tempfile.TemporaryDirectory(prefix="florenz-bench-train-") as tmp:
        def ours():
            model, feed = copy.deepcopy(init), iter(batches)
            train_loop(model, lambda: next(feed), lambda m, b: batch_ce(m, b).mean(), steps, batch_size, OPTIM,
                       str(Path(tmp) / "train_log.csv"), desc="bench train_loop")

        def theirs():
            _hf_trainer(copy.deepcopy(init), batches, steps, str(Path(tmp) / "hf")).train()

        ours_s, theirs_s = paired_seconds(ours, theirs, repeats)

        def load():
            loader = new_loader()
            for _ in range(steps):
                loader()

        loader_s = paired_seconds(load, lambda: None, repeats)[0]
    log.info("training: train_loop %.2fs, Trainer %.2fs, loader %.2fs for %d samples", ours_s, theirs_s, loader_s, samples)
    return [
        make_row("training", "trainer vs transformers Trainer", samples / ours_s, samples / theirs_s, "samples/s",
                 ">=", 1.0),
        make_row("training", "data loader vs trainer consumption", samples / loader_s, samples / ours_s, "samples/s",
                 ">=", 5.0),
    ]

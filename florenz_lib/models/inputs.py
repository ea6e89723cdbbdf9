"""Model inputs: images, task prompts (the authors' wording) and batch collation."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer

from ..io import decode_png
from ..study import CAPTION_PROMPT, LANGUAGE_MODIFIER, LANGUAGE_NAMES, TRANSLATION_PROMPT
from .loss import IGNORE_INDEX
from .tokenizers import IMAGE_TOKEN

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
BASE_CAPTION_PROMPT = CAPTION_PROMPT  # base Florence-2's "<CAPTION>" prompt, without a target language


@dataclass
class Example:
    image: torch.Tensor   # uint8 [3, H, W]
    task: str             # "caption" or "translation"
    lang: str             # target language
    source: str           # English source text for translation, "" for captioning
    target: str


def png_to_tensor(png: bytes) -> torch.Tensor:
    """Decode PNG bytes to a uint8 [3, H, W] RGB tensor."""
    return torch.from_numpy(np.array(decode_png(png))).permute(2, 0, 1)


def image_file_to_tensor(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file (any format PIL reads: the public benchmarks' .jpg, the world's .png) to a
    uint8 [3, H, W] RGB tensor; the collator resizes it to the model's resolution."""
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def task_prompt(task: str, lang: str, source: str) -> str:
    """The encoder prompt in the authors' wording (florenz_lib.study): the target-language modifier, a
    space, then the task's prompt ("The target language is simplified Chinese. What does the image
    describe?")."""
    if lang not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language {lang!r}; expected one of {tuple(LANGUAGE_NAMES)}")
    modifier = LANGUAGE_MODIFIER.format(name=LANGUAGE_NAMES[lang])
    if task == "caption":
        return f"{modifier} {CAPTION_PROMPT}"
    if task == "translation":
        return f"{modifier} {TRANSLATION_PROMPT.format(source=source)}"
    raise ValueError(f"unknown task {task!r}")


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


@dataclass
class Seq2SeqCollator:
    """Encoder input: <image> placeholders then the prompt; labels: bos target eos in the decoder tokenizer;
    decoder input: labels shifted right behind decoder_start_id."""
    encoder_tokenizer: Tokenizer
    decoder_tokenizer: Tokenizer
    n_image_tokens: int
    max_prompt_tokens: int
    max_target_tokens: int
    decoder_start_id: int
    fixed_prompt: str | None = None  # base Florence-2 pretraining uses one English captioning prompt
    image_size: int | None = None     # resize other sizes to this (fine-tuning at a higher resolution)

    def __post_init__(self):
        self.image_token_id = self.encoder_tokenizer.token_to_id(IMAGE_TOKEN)
        self.encoder_pad_id = self.encoder_tokenizer.token_to_id("<pad>")
        self.decoder_pad_id = self.decoder_tokenizer.token_to_id("<pad>")

    def _sized(self, image: torch.Tensor) -> torch.Tensor:
        """The uint8 image at image_size x image_size, bicubic as the paper's preprocessing."""
        if self.image_size is None or tuple(image.shape[-2:]) == (self.image_size, self.image_size):
            return image
        resized = torch.nn.functional.interpolate(image[None].float(), size=(self.image_size, self.image_size),
                                                  mode="bicubic", antialias=True, align_corners=False)
        return resized[0].round().clamp(0, 255).to(torch.uint8)

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        prompts = [self.fixed_prompt or task_prompt(e.task, e.lang, e.source) for e in examples]
        prompt_ids = [enc.ids[: self.max_prompt_tokens]
                      for enc in self.encoder_tokenizer.encode_batch(prompts)]
        input_rows = [[self.image_token_id] * self.n_image_tokens + ids for ids in prompt_ids]
        labels = []
        for enc in self.decoder_tokenizer.encode_batch([e.target for e in examples]):
            ids = enc.ids
            if len(ids) > self.max_target_tokens:  # keep the closing eos when truncating
                ids = ids[: self.max_target_tokens - 1] + ids[-1:]
            labels.append(ids)
        input_ids = _pad(input_rows, self.encoder_pad_id)
        decoder_input_ids = _pad([[self.decoder_start_id] + ids[:-1] for ids in labels], self.decoder_pad_id)
        label_ids = _pad(labels, IGNORE_INDEX)
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != self.encoder_pad_id).long(),
            "pixel_values": normalize_images(torch.stack([self._sized(e.image) for e in examples])),
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": (label_ids != IGNORE_INDEX).long(),
            "labels": label_ids,
        }

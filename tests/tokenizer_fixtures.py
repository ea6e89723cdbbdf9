"""Tiny tokenizers in the published checkpoints' formats, for tests of the cc12m world's tokenizer handling.

`write_florence2_tokenizer` writes what a Florence-2 checkpoint directory holds: BART's byte-level BPE
(ByteLevel pre-tokenizer and decoder, RobertaProcessing "<s> $A </s>", <s> 0 <pad> 1 </s> 2 <unk> 3 and
<mask> last in the BPE vocabulary), then Florence-2's 1024 added special tokens (<od> </od> <ocr> </ocr>,
<loc_0> .. <loc_999>, the task tokens) and no <image>. `write_gemma2_tokenizer` writes Gemma-2's format:
BPE with byte_fallback and the 256 <0x00> .. <0xFF> byte tokens, a normalizer replacing " " with "▁", no
pre-tokenizer, the Replace / ByteFallback / Fuse decoder, pad 0 eos 1 bos 2 unk 3, and a post-processor
that adds <bos> only. Both train their BPE merges with `tokenizers` on a few hundred sentences; a
vocabulary larger than the sentences give is filled with synthetic merges (Florence-2) or pieces (Gemma-2),
so that the real sizes (51289, 256000) can be built for timing.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from florenz_lib.models.inputs import task_prompt

METASPACE = "\u2581"

_SUBJECTS = {
    "en": ["a small dog", "two red cars", "an old man", "a young woman", "the black cat", "three children",
           "a green bird", "the tall tree"],
    "de": ["ein kleiner Hund", "zwei rote Autos", "ein alter Mann", "eine junge Frau", "die schwarze Katze",
           "drei Kinder", "ein grüner Vogel", "der hohe Baum"],
    "fr": ["un petit chien", "deux voitures rouges", "un vieil homme", "une jeune femme", "le chat noir",
           "trois enfants", "un oiseau vert", "le grand arbre"],
    "es": ["un perro pequeño", "dos coches rojos", "un hombre mayor", "una mujer joven", "el gato negro",
           "tres niños", "un pájaro verde", "el árbol alto"],
    "ru": ["маленькая собака", "две красные машины", "пожилой мужчина", "молодая женщина", "чёрная кошка",
           "трое детей", "зелёная птица", "высокое дерево"],
    "zh": ["一只小狗", "两辆红色的汽车", "一位老人", "一位年轻的女士", "那只黑猫", "三个孩子", "一只绿色的鸟",
           "那棵高大的树"],
}
_PREDICATES = {
    "en": ["is sitting on the grass.", "stands next to the house.", "is running along the beach.",
           "is waiting at the station.", "looks at the camera.", "is playing in the park."],
    "de": ["sitzt auf dem Gras.", "steht neben dem Haus.", "läuft am Strand entlang.", "wartet am Bahnhof.",
           "schaut in die Kamera.", "spielt im Park."],
    "fr": ["est assis sur l'herbe.", "se tient à côté de la maison.", "court le long de la plage.",
           "attend à la gare.", "regarde la caméra.", "joue dans le parc."],
    "es": ["está sentado en la hierba.", "está junto a la casa.", "corre por la playa.",
           "espera en la estación.", "mira a la cámara.", "juega en el parque."],
    "ru": ["сидит на траве.", "стоит рядом с домом.", "бежит по пляжу.", "ждёт на вокзале.",
           "смотрит в камеру.", "играет в парке."],
    "zh": ["坐在草地上。", "站在房子旁边。", "沿着海滩奔跑。", "在车站等待。", "看着镜头。", "在公园里玩耍。"],
}
LANGS = tuple(_SUBJECTS)


def sentences(lang: str) -> list[str]:
    """48 short captions in `lang` (en, de, fr, es, ru, zh); zh without spaces."""
    joiner = "" if lang == "zh" else " "
    return [f"{s[:1].upper()}{s[1:]}{joiner}{p}" for s in _SUBJECTS[lang] for p in _PREDICATES[lang]]


def english_texts() -> list[str]:
    """English captions plus the authors' prompts in every target language (what the encoder reads)."""
    prompts = [task_prompt(task, lang, "a small dog") for task in ("caption", "translation") for lang in LANGS]
    return sentences("en") + prompts


def multilingual_texts() -> list[str]:
    return [t for lang in LANGS for t in sentences(lang)]


# Florence-2's additions to BART, in the order its processor adds them (1024 with 1000 locations).
FLORENCE_TASK_TOKENS = ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
                        "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
                        "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]
BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def florence2_added_tokens(n_locations: int = 1000) -> list[str]:
    return ["<od>", "</od>", "<ocr>", "</ocr>"] + [f"<loc_{i}>" for i in range(n_locations)] + FLORENCE_TASK_TOKENS


def _added(token_id: int, content: str, special: bool = True, normalized: bool = False, lstrip: bool = False) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
            "normalized": normalized, "special": special}


def _trained(tok: Tokenizer) -> tuple[dict[str, int], list[list[str]]]:
    model = json.loads(tok.to_str())["model"]
    merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model["merges"]]
    return model["vocab"], merges


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")


def write_florence2_tokenizer(out_dir, bpe_vocab_size: int = 600, n_locations: int = 1000,
                              texts: list[str] | None = None, seed: int = 0) -> tuple[str, int]:
    """A Florence-2-format tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) in out_dir.

    bpe_vocab_size counts BART's part (50265 in the real file) including the four specials and <mask>;
    Florence-2's added tokens follow it. Returns (tokenizer.json path, vocabulary size)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=bpe_vocab_size - 1, special_tokens=BART_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts or english_texts(), trainer=trainer)
    vocab, merges = _trained(tok)
    tokens = sorted(vocab, key=vocab.get)
    rng = random.Random(seed)
    ordinary = tokens[len(BART_SPECIALS):]
    while len(tokens) < bpe_vocab_size - 1:  # synthetic merges: a real-sized BPE for timing
        a, b = rng.choice(ordinary), rng.choice(ordinary)
        if len(a) + len(b) <= 12 and a + b not in vocab:
            vocab[a + b] = len(tokens)
            tokens.append(a + b)
            ordinary.append(a + b)
            merges.append([a, b])
    vocab = {t: i for i, t in enumerate(tokens[: bpe_vocab_size - 1])}
    vocab["<mask>"] = bpe_vocab_size - 1
    added = [_added(i, t, normalized=True) for i, t in enumerate(BART_SPECIALS)]
    added.append(_added(bpe_vocab_size - 1, "<mask>", lstrip=True))
    florence = florence2_added_tokens(n_locations)
    added += [_added(bpe_vocab_size + i, t) for i, t in enumerate(florence)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True,
                           "add_prefix_space": False},
        "decoder": {**byte_level, "add_prefix_space": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [m for m in merges if m[0] + m[1] in vocab]},
    }
    path = out / "tokenizer.json"
    _write_json(path, spec)
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>"}
    mask = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    _write_json(out / "special_tokens_map.json", {**specials, "mask_token": mask,
                                                   "additional_special_tokens": florence})
    _write_json(out / "tokenizer_config.json", {
        **specials, "mask_token": "<mask>", "add_prefix_space": False, "errors": "replace",
        "model_max_length": 1024, "tokenizer_class": "BartTokenizer", "additional_special_tokens": florence,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}})
    size = Tokenizer.from_file(str(path)).get_vocab_size()
    assert size == bpe_vocab_size + len(florence), size
    return str(path), size


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]"]
GEMMA_BYTES = [f"<0x{b:02X}>" for b in range(256)]
_SYNTHETIC_ALPHABET = ("abcdefghijklmnopqrstuvwxyzäöüßéèàçñáíóú"
                       "абвгдеёжзийклмнопрстуфхцчшщъыьэюя" "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年")


def write_gemma2_tokenizer(out_dir, vocab_size: int = 1200, n_unused: int = 99, texts: list[str] | None = None,
                           seed: int = 0) -> tuple[str, int]:
    """A Gemma-2-format tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) in out_dir, with
    vocab_size ids: <pad> <eos> <bos> <unk> <mask> [@BOS@] <unused0..>, <start_of_turn> <end_of_turn>, the 256
    byte tokens, then pieces learned from multilingual sentences (and, past what they give, synthetic ones).
    Returns (tokenizer.json path, vocabulary size)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fixed = GEMMA_SPECIALS + [f"<unused{i}>" for i in range(n_unused)] + ["<start_of_turn>", "<end_of_turn>"]
    tokens = fixed + GEMMA_BYTES
    if vocab_size <= len(tokens):
        raise ValueError(f"vocab_size {vocab_size} leaves no room for pieces after {len(tokens)} fixed tokens")
    # sentencepiece without a dummy prefix: "▁" starts every word but the first
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size - len(tokens), 3000), show_progress=False,
                                  initial_alphabet=[METASPACE])
    tok.train_from_iterator(texts or multilingual_texts(), trainer=trainer)
    learned, merges = _trained(tok)
    known = set(tokens)
    tokens += [t for t in sorted(learned, key=learned.get) if t not in known]
    tokens = tokens[:vocab_size]
    rng, seen = random.Random(seed), set(tokens)
    while len(tokens) < vocab_size:  # synthetic pieces, as unreachable by merges as many of Gemma's are
        piece = "".join(rng.choice(_SYNTHETIC_ALPHABET) for _ in range(rng.randint(1, 9)))
        piece = METASPACE + piece if rng.random() < 0.6 else piece
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    vocab = {t: i for i, t in enumerate(tokens)}
    added = [_added(i, t, special=(t in GEMMA_SPECIALS or t.startswith("<unused") or "turn" in t))
             for i, t in enumerate(fixed)]
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": METASPACE},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": METASPACE}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [m for m in merges if m[0] in vocab and m[1] in vocab
                                             and m[0] + m[1] in vocab]},
    }
    path = out / "tokenizer.json"
    _write_json(path, spec)
    entry = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    turns = ["<start_of_turn>", "<end_of_turn>"]
    _write_json(out / "special_tokens_map.json", {
        "additional_special_tokens": turns, **{f"{name}_token": {"content": f"<{name}>", **entry}
                                              for name in ("bos", "eos", "pad", "unk")}})
    _write_json(out / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "additional_special_tokens": turns,
        "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False, "sp_model_kwargs": {},
        "tokenizer_class": "GemmaTokenizer", "use_default_system_prompt": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}})
    size = Tokenizer.from_file(str(path)).get_vocab_size()
    assert size == vocab_size, size
    return str(path), size

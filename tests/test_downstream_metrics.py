"""The downstream metrics against direct sacrebleu and pycocoevalcap calls on the same strings."""
import math

import pytest
import sacrebleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.metrics import BLEU

from florenz_lib.downstream.metrics import (
    coco_cider,
    commute_accuracy,
    corpus_bleu,
    xm3600_cider,
    xm3600_tokens,
)

HYPOTHESES = ["A dog runs on the grass.", "Two cats sleep on a sofa.", "A man rides a bike down the road.",
              "A red car is parked on the street."]
REFERENCES = [  # N x 5: five references per segment, as Multi30K Task 2 and COCO have
    ["A dog is running on the grass.", "The dog runs across a lawn.", "A brown dog on green grass.",
     "A dog running outside.", "A happy dog runs on the grass."],
    ["Two cats are sleeping on a couch.", "Cats asleep on the sofa.", "Two cats on a sofa.",
     "A pair of cats sleep on a couch.", "Two kittens nap on a sofa."],
    ["A man riding a bicycle on a road.", "A cyclist rides down the road.", "A man on a bike.",
     "Someone cycling along a street.", "A man rides his bike down the road."],
    ["A red car parked on a street.", "A car is parked by the road.", "The red car is on the street.",
     "A parked red automobile.", "A red car is parked."],
]


def test_bleu_single_reference_matches_sacrebleu():
    refs = [[r[0]] for r in REFERENCES]
    score, signature = corpus_bleu(HYPOTHESES, refs, "de")
    assert score == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [[r[0] for r in REFERENCES]]).score, abs=1e-9)
    assert "nrefs:1" in signature and "tok:13a" in signature and "version:2." in signature


def test_bleu_multi_reference_is_transposed_unlike_the_authors_call():
    score, signature = corpus_bleu(HYPOTHESES, REFERENCES, "de")
    transposed = [list(reference_set) for reference_set in zip(*REFERENCES)]  # 5 x N
    assert len(transposed) == 5 and len(transposed[0]) == len(HYPOTHESES)
    assert score == pytest.approx(BLEU(tokenize="13a").corpus_score(HYPOTHESES, transposed).score, abs=1e-9)
    assert "nrefs:5" in signature
    # the authors' Multi30K Task 2 call hands sacrebleu the N x 5 list as if it were reference sets
    untransposed = BLEU(tokenize="13a").corpus_score(HYPOTHESES, REFERENCES).score
    assert abs(score - untransposed) > 5
    assert score > BLEU(tokenize="13a").corpus_score(HYPOTHESES, [transposed[0]]).score  # more references help


def test_bleu_variable_reference_counts_are_padded():
    refs = [REFERENCES[0][:2], REFERENCES[1][:5], REFERENCES[2][:1], REFERENCES[3][:3]]
    score, signature = corpus_bleu(HYPOTHESES, refs, "fr")
    padded = [[r[k] if k < len(r) else None for r in refs] for k in range(5)]
    assert score == pytest.approx(BLEU(tokenize="13a").corpus_score(HYPOTHESES, padded).score, abs=1e-9)
    assert "nrefs:var" in signature


def test_bleu_zh_uses_the_zh_tokenizer():
    hyps = ["一只狗在草地上跑。", "两只猫睡在沙发上。"]
    refs = [["一只狗在草地上奔跑。"], ["两只猫在沙发上睡觉。"]]
    score, signature = corpus_bleu(hyps, refs, "zh")
    assert "tok:zh" in signature
    assert score == pytest.approx(BLEU(tokenize="zh").corpus_score(hyps, [[r[0] for r in refs]]).score, abs=1e-9)
    # 13a leaves an unspaced Chinese sentence one token, so its score differs
    assert score != pytest.approx(BLEU(tokenize="13a").corpus_score(hyps, [[r[0] for r in refs]]).score)


@pytest.mark.parametrize("hyps, refs", [(HYPOTHESES[:3], REFERENCES), (HYPOTHESES, [*REFERENCES[:3], []]),
                                        (HYPOTHESES, [*REFERENCES[:3], "a bare string"]), ([], [])])
def test_bleu_and_cider_reject_misaligned_segments(hyps, refs):
    with pytest.raises(ValueError):
        corpus_bleu(hyps, refs, "en")
    with pytest.raises(ValueError):
        xm3600_cider(hyps, refs, "en")


def test_coco_cider_runs_the_java_ptb_tokenizer_then_cider():
    score = coco_cider(HYPOTHESES, REFERENCES)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)})
    res = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(HYPOTHESES)})
    assert gts[0][0] == "a dog is running on the grass"  # java lowercased and dropped the period
    assert score == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert score > 0.5
    # case and punctuation do not matter after PTB tokenization
    shouted = [h.upper().replace(" ", " , ") for h in HYPOTHESES]
    assert coco_cider(shouted, REFERENCES) == pytest.approx(score, abs=1e-12)


def test_xm3600_tokens_segment_chinese_with_jieba():
    tokens, segmenter = xm3600_tokens(["两个红色的圆形在一个蓝色方块的左边。"], "zh")
    assert segmenter == "jieba"
    assert tokens[0][:4] == ["两个", "红色", "的", "圆形"] and "。" not in tokens[0]
    assert "".join(tokens[0]) == "两个红色的圆形在一个蓝色方块的左边"


def test_xm3600_tokens_nfkc_punctuation_and_case():
    tokens, segmenter = xm3600_tokens(["ＡＮ Red-haired \"Dog\", running…"], "en")
    assert segmenter == "whitespace"
    assert tokens == [["an", "red", "haired", "dog", "running"]]


def test_xm3600_cider_zh_matches_cider_on_segmented_text():
    hyps = ["一只狗在草地上跑。", "两只猫睡在沙发上。", "一个男人骑自行车。"]
    refs = [["一只棕色的狗在草地上奔跑。", "狗在草地上跑"], ["两只猫在沙发上睡觉。", "沙发上有两只猫"],
            ["一个男人在路上骑自行车。", "男人骑着自行车"]]
    score, segmenter = xm3600_cider(hyps, refs, "zh")
    assert segmenter == "jieba"
    hyp_tokens, _ = xm3600_tokens(hyps, "zh")
    assert all(len(t) > 2 for t in hyp_tokens)  # words, not one unsegmented string
    ref_tokens = [xm3600_tokens(r, "zh")[0] for r in refs]
    expected, _ = Cider().compute_score({i: [" ".join(t) for t in toks] for i, toks in enumerate(ref_tokens)},
                                        {i: [" ".join(t)] for i, t in enumerate(hyp_tokens)})
    assert score == pytest.approx(expected, abs=1e-12) and score > 0
    # without segmentation each caption would be one "word" and no hypothesis would match
    unsegmented, _ = Cider().compute_score({i: [r.rstrip("。") for r in refs_i] for i, refs_i in enumerate(refs)},
                                           {i: [h.rstrip("。")] for i, h in enumerate(hyps)})
    assert unsegmented == 0 and score > unsegmented


def test_xm3600_needs_stanza_for_other_unspaced_languages(tmp_path):
    with pytest.raises(ValueError, match="stanza"):
        xm3600_cider(["写真"], [["写真です"]], "ja")
    with pytest.raises(FileNotFoundError, match="no-stanza"):
        xm3600_cider(["a dog"], [["a dog"]], "en", stanza_dir=tmp_path / "no-stanza")


def test_commute_accuracy_counts_ties_as_wrong():
    assert commute_accuracy([1.0, 2.0, 3.0, 0.5], [2.0, 2.0, 1.0, 0.6]) == pytest.approx(0.5)
    assert commute_accuracy([1.0], [1.0]) == 0.0
    with pytest.raises(ValueError):
        commute_accuracy([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        commute_accuracy([], [])
    with pytest.raises(ValueError, match="NaN"):
        commute_accuracy([math.nan], [1.0])

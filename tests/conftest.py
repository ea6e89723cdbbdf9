import pytest
import torch

from florenz_lib.models.configs import florence2_config, gemma2_config
from florenz_lib.models.tokenizers import train_decoder_tokenizer, train_encoder_tokenizer

ENGLISH = ["two red circles left of a blue square", "a photo of a small green star", "there is a big bow",
           "The target language is German. What does the image describe?",
           "The target language is Spanish. Translate the following text:"] * 4
MULTILINGUAL = ENGLISH + ["zwei rote Kreise links von einem blauen Quadrat", "una pequeña estrella verde",
                          "两个红色的圆形在一个蓝色方块的左边", "две красные звезды"] * 4

TINY_FLORENCE = {"vision_dims": [8, 16], "vision_depths": [1, 1], "vision_heads": [1, 2], "d_model": 16,
                 "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 32, "attention_heads": 2}
TINY_GEMMA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "head_dim": 16, "intermediate_size": 64}


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: runs on a real local SLURM cluster (scripts/slurm-local-up.sh, "
                                       "as root); `make test` leaves these out, `make test-slurm` runs them")


@pytest.fixture(scope="session")
def tokenizers():
    return train_encoder_tokenizer(ENGLISH, 300), train_decoder_tokenizer(MULTILINGUAL, 320)


@pytest.fixture(scope="session")
def base_models(tokenizers):
    from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM
    encoder_tok, decoder_tok = tokenizers
    torch.manual_seed(0)
    florence = Florence2ForConditionalGeneration(florence2_config(TINY_FLORENCE, encoder_tok.get_vocab_size()))
    gemma = Gemma2ForCausalLM(gemma2_config(TINY_GEMMA, decoder_tok.get_vocab_size()))
    return florence.eval(), gemma.eval()

"""Models: world tokenizers, tiny Florence-2 / Gemma-2 bases, restructuring (FVT, gated cross attention),
freezing policy, parameter and MAC counts."""

"""The cc12m world: CC12M images, NLLB caption translation, CCMatrix corpus, CLIP alignment."""

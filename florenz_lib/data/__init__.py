"""Data rule group: CLIP on the world, embeddings, FAISS alignment with dedup, Arrow shards
and the held-out UC/ST/SC test splits (DESIGN.md sections 1-3)."""

"""Evaluation: cross-entropy on the held-out UC, ST and SC splits."""

"""Downstream evaluation: benchmark loaders (public formats) and their metrics (DESIGN.md section 5)."""

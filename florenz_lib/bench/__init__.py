"""`florenz bench` (issue 9): each heavy stage measured against what a user would otherwise use, side by
side in one process run on the same data (florenz_lib.bench.run), one module per benchmark family."""

# The benchmark families, in the order they run (kept here, free of heavy imports, for the CLI).
FAMILIES = ("training", "ce_eval", "embedding", "alignment", "translation", "growth")

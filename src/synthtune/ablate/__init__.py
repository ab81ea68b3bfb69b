"""``synthtune ablate``: variants of one recipe over training seeds, with intervals
(docs/ablations.md)."""

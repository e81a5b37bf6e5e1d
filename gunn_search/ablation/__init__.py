"""`gunn-search ablate`: variants of a searched config trained paired by seed, and their statistics."""

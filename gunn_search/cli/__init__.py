"""The commands: `gunn-search` (search, export, ablate) and `gunn-train`, thin layers over the
packages above."""

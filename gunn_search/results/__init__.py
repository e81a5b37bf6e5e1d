"""What a search leaves: the best trials and the Pareto front, plots, export and warm start (a
trial's status is shared vocabulary: gunn_search.status)."""

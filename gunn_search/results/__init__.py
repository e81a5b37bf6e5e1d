"""What a search leaves: a trial's status, the best trials and the Pareto front, plots, export
and warm start."""

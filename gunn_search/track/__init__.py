"""Tracking in MLflow, from the driver: the store, its URI, a run per trial and the UI link.
Below the run and the results: nothing here imports them (the search's callback, which joins
them, is gunn_search.run.search_runs)."""

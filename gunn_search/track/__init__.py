"""Tracking in MLflow, from the driver: the store, its URI, the search's runs and the UI link."""

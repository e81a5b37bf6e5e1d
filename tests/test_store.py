"""gunn_search/track/store.py's writes."""

from __future__ import annotations


def test_a_batch_of_more_params_than_one_request_holds_lands_whole(tmp_path):
    """MLflow's store takes at most 100 params a request; `batch` leaves the splitting to
    MlflowClient.log_batch, and all 250 params, the metric and the tag arrive."""
    from mlflow import MlflowClient

    from gunn_search.track.store import BufferedClient, batch

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("x"))
    params = {f"p{i:03d}": i for i in range(250)}
    batch(BufferedClient(client), run.info.run_id, metrics={"val_acc": 0.5}, step=3,
          params=params, tags={"role": "trial"})
    data = client.get_run(run.info.run_id).data
    assert data.params == {k: str(v) for k, v in params.items()}
    assert data.metrics == {"val_acc": 0.5} and data.tags["role"] == "trial"

import os

import pytest
import torch

# The suite runs on 2 CPU cores; keep torch from oversubscribing them.
torch.set_num_threads(2)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_addoption(parser):
    parser.addoption("--skip-cluster", action="store_true",
                     help="skip tests that start multi-process Ray clusters or servers")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--skip-cluster"):
        skip = pytest.mark.skip(reason="--skip-cluster given")
        for item in items:
            if "cluster" in item.keywords:
                item.add_marker(skip)

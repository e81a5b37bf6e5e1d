"""The search's own state file, `gunn_search.json`, next to Tune's experiment state in
`<storage>/<experiment>/`: the MLflow parent run, the tracking URI, the space's fingerprint and
the settings a resumed search must keep (`resumed_settings`).

Read and written through pyarrow's file systems (what Tune uses), so a storage URI every node
reaches (s3://, gs://) works as a local path does.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gunn_search.errors import SearchError

if TYPE_CHECKING:
    from gunn_search.space import Space

STATE_FILE = "gunn_search.json"


def _filesystem(path: str):
    # pyarrow (a Ray dependency) is what Tune itself uses for storage URIs.
    import pyarrow.fs as pafs
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def read_state(path: str, name: str = STATE_FILE) -> dict | None:
    """The search's own state file next to Tune's (or another of its JSON files: `name`), or
    None if there is none."""
    import pyarrow.fs as pafs
    fs, p = _filesystem(path)
    f = f"{p}/{name}"
    if fs.get_file_info(f).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(f) as stream:
        return json.loads(stream.read().decode())


def write_state(path: str, state: dict, name: str = STATE_FILE) -> None:
    """Written to a temporary name and moved into place: never half a file to resume from."""
    from trainers.disk_full import disk_full, is_disk_full

    fs, p = _filesystem(path)
    tmp = f"{p}/{name}.tmp"
    try:
        fs.create_dir(p, recursive=True)
        with fs.open_output_stream(tmp) as stream:
            stream.write(json.dumps(state, indent=2).encode())
        fs.move(tmp, f"{p}/{name}")
    except OSError as e:
        if is_disk_full(e):
            raise SearchError(str(disk_full(f"{p}/{name}", e))) from None
        raise


def resumed_settings(space: Space) -> dict:
    """What the command line may change in a space (the file's fingerprint leaves flags out)
    and a resumed search cannot: Tune restores its trials, scheduler and sampler as they were,
    so a new value would be ignored or, for the epochs, fail the resumed trials' checkpoints."""
    s = space.search
    return {"--max-epochs": space.max_epochs, "--num-samples": s.num_samples, "--seed": s.seed,
            "--budget-epochs": s.budget_epochs, "--time-budget": s.time_budget,
            "--budget-gpu-hours": s.budget_gpu_hours}


def changed_settings(state: dict, space: Space) -> list[str]:
    """"--max-epochs 4 (not 9)" for each setting this command changes; none for a state file
    written before the settings were recorded."""
    was, now = state.get("settings") or {}, resumed_settings(space)
    return [f"{k} {was[k]} (not {now[k]})" for k in now if k in was and was[k] != now[k]]

"""Which search of an experiment a command means: running the same command again starts a new
search beside the earlier ones, `--resume` continues the latest that did not finish (or the one
it names).

The searches of experiment `smoke` are named `smoke`, `smoke-2`, `smoke-3`, ... Each name is
its own Tune folder in the storage (`<storage>/<name>`, with its state file), its own Optuna
study and its own MLflow parent run (`search-<name>`), all in the one MLflow experiment `smoke`.
The first search keeps the name the layout before this had (`<storage>/<experiment>`), so those
folders still resume. The state file says which experiment a folder belongs to (`experiment`),
so experiment `smoke-2`'s own first search is not taken for `smoke`'s second; a folder without
that key (written before) is its experiment's first search. A search that ended on its own
(not interrupted, no trial errored: `--resume` reruns errored trials) is marked `finished` in
its state file.
"""

from __future__ import annotations

import re

from gunn_search.errors import SearchError


def safe_name(name: str) -> str:
    """A file-name-safe component (a search's folder, an exported file): never leaves its
    directory."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "run"


def candidate(experiment: str, n: int) -> str:
    return experiment if n == 1 else f"{experiment}-{n}"


def following(experiment: str, name: str):
    """`name` (a search of `experiment`), then the names after it: smoke-3, smoke-4, ..."""
    m = re.fullmatch(re.escape(experiment) + r"(?:-(\d+))?", name)
    n = int(m.group(1) or 1) if m else 1
    if not m:
        yield name
    while True:
        yield candidate(experiment, n)
        n += 1


def searches(storage: str, experiment: str) -> list[tuple[int, str, dict]]:
    """The searches of `experiment` in `storage` that have a state file: (n, name, state), in
    order."""
    from gunn_search.run.state_file import _filesystem, read_state

    import pyarrow.fs as pafs

    root = storage
    fs, p = _filesystem(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    except OSError:
        return []
    base = safe_name(experiment)
    pattern = re.compile(re.escape(base) + r"(?:-(\d+))?")
    out = []
    for info in infos:
        if info.type != pafs.FileType.Directory:
            continue
        m = pattern.fullmatch(info.base_name)
        if not m:
            continue
        n = int(m.group(1) or 1)
        if n < 2 and m.group(1):
            continue
        state = read_state(f"{root.rstrip('/')}/{info.base_name}")
        if state is None:
            continue
        owner = state.get("experiment", experiment if n == 1 else None)
        if owner != experiment:
            continue
        out.append((n, info.base_name, state))
    return sorted(out)


def new_name(storage: str, experiment: str) -> tuple[str, int]:
    """The name of a new search of `experiment`: the one after its latest; (name, n)."""
    taken = searches(storage, experiment)
    n = taken[-1][0] + 1 if taken else 1
    return candidate(experiment, n), n


def resumed_name(storage: str, experiment: str, asked: str | bool) -> str:
    """The search `--resume` continues: the one named, or the latest that did not finish."""
    found = searches(storage, experiment)
    if isinstance(asked, str):
        if not any(name == asked for _, name, _ in found):
            names = ", ".join(name for _, name, _ in found) or "none"
            raise SearchError(f"--resume {asked}: no such search of experiment {experiment!r} in "
                              f"{storage} (its searches: {names})")
        return asked
    open_ = [name for _, name, state in found if not state.get("finished")]
    if not open_:
        what = (f"all {len(found)} of its searches finished" if found
                else "it has no search there")
        raise SearchError(f"--resume: nothing to resume for experiment {experiment!r} in "
                          f"{storage} ({what}); run without --resume for a new search")
    return open_[-1]


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"

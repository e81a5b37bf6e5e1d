"""Finding and reading a space file: a path, or the name of a bundled space.

Errors are one line, ``file: field: problem`` (`trainers.config_errors`, shared with gunn-train).
Changing a read space's settings: `gunn_search.space.overrides`.
"""

from __future__ import annotations

from pathlib import Path

from trainers.config_errors import ConfigError, read_yaml

from gunn_search.space.schema import Space, parse_space

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "search_spaces"


def bundled_spaces() -> list[str]:
    """Names of the bundled space files."""
    return sorted(p.name for p in BUNDLED_DIR.glob("*.yaml")) if BUNDLED_DIR.is_dir() else []


def resolve_space_path(path_or_name: str | Path) -> Path:
    """An existing file, or a bundled space by name ("cifar_gunn15" or "cifar_gunn15.yaml")."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    if p.exists():
        raise ConfigError("not a file", file=str(p))
    name = str(path_or_name)
    if p.name == name and name:  # a bare name: look in the bundled directory
        for cand in (name, f"{name}.yaml", f"{name}.yml"):
            if (BUNDLED_DIR / cand).is_file():
                return BUNDLED_DIR / cand
        raise ConfigError(f"no such file, and no bundled space of that name "
                          f"(bundled: {', '.join(bundled_spaces()) or 'none'})", file=name)
    raise ConfigError("no such file", file=name)


def load_space(path_or_name: str | Path) -> Space:
    """Read and validate a space file; ConfigError (one line) on any problem.

    The experiment's name defaults to the file's stem.
    """
    path = resolve_space_path(path_or_name)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    return parse_space(data, str(path))


__all__ = ["BUNDLED_DIR", "bundled_spaces", "resolve_space_path", "load_space"]

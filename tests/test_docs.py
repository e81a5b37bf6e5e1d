"""The commands and configs in the docs are real: YAML parses and has the right shape, every
`gunn-search` command line parses with the CLI's own parsers, every `mlflow server` / `ray ...`
command line parses with theirs, and every bundled space named exists and loads."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from gunn_search.cli.export import export_parser
from gunn_search.cli.search import search_parser
from gunn_search.space import bundled_spaces, load_space

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_MD = ROOT / "docs" / "cluster.md"
README = ROOT / "README.md"

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SEPARATORS = {";", "&", "&&", "|", "||", "(", ")"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(path.read_text(encoding="utf-8")) if kind == lang]


def yaml_docs(path: Path) -> list:
    return [d for b in blocks(path, "yaml") for d in yaml.safe_load_all(b) if d is not None]


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a bash snippet: continuations joined, comments dropped, split on
    ; & && | ||, leading VAR=value assignments (and `export`, `env`) stripped."""
    script = re.sub(r"\\\n", " ", script)
    commands = []
    for line in script.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        current: list[str] = []
        for tok in list(lex) + [";"]:
            if tok in SEPARATORS:
                while current and (ENV_ASSIGNMENT.match(current[0]) or current[0] == "env"):
                    current.pop(0)
                if current and current[0] != "export":
                    commands.append(current)
                current = []
            else:
                current.append(tok)
    return commands


def gunn_search_argvs(commands: list[list[str]]) -> list[list[str]]:
    """The argument lists given to gunn-search where it is the program: first in the command,
    or after `--` (ray job submit ... -- gunn-search ...), or as `python -m gunn_search.cli`."""
    out = []
    for cmd in commands:
        starts = [0] + [i + 1 for i, tok in enumerate(cmd) if tok == "--"]
        for p in starts:
            prog = cmd[p:p + 1]
            if prog and Path(prog[0]).name == "gunn-search":
                out.append(cmd[p + 1:])
            elif prog and Path(prog[0]).name.startswith("python") and \
                    cmd[p + 1:p + 3] == ["-m", "gunn_search.cli"]:
                out.append(cmd[p + 3:])
    return out


def parse_gunn_search(argv: list[str]):
    parser, args = (export_parser(), argv[1:]) if argv[:1] == ["export"] else (search_parser(), argv)
    if argv[:1] == ["ablate"]:
        from gunn_search.cli.ablate import ablate_parser
        parser, args = ablate_parser(), argv[1:]
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"gunn-search {shlex.join(argv)}: does not parse")


def check_space_names(parsed) -> None:
    space = getattr(parsed, "space", None)
    if space and "/" not in space:  # a bare name must be a bundled space
        names = set(bundled_spaces())
        assert space in names or f"{space}.yaml" in names, f"no bundled space {space!r}"
        load_space(space)


# --- docs/cluster.md: YAML ----------------------------------------------------------------------

def test_cluster_doc_exists_with_yaml_and_bash_blocks():
    assert CLUSTER_MD.is_file()
    assert len(blocks(CLUSTER_MD, "yaml")) >= 2 and len(blocks(CLUSTER_MD, "bash")) >= 3
    # Every config block is fenced as yaml (a ```yml or unlabelled YAML block would go untested).
    assert not blocks(CLUSTER_MD, "yml")


def test_every_yaml_block_parses():
    for body in blocks(CLUSTER_MD, "yaml"):
        docs = list(yaml.safe_load_all(body))
        assert docs and all(d is not None for d in docs), body[:200]


def launcher_config() -> dict:
    found = [d for d in yaml_docs(CLUSTER_MD) if isinstance(d, dict) and "cluster_name" in d]
    assert len(found) == 1, "expected one Ray cluster launcher config in docs/cluster.md"
    return found[0]


def rayjob() -> dict:
    found = [d for d in yaml_docs(CLUSTER_MD) if isinstance(d, dict) and d.get("kind") == "RayJob"]
    assert len(found) == 1, "expected one KubeRay RayJob in docs/cluster.md"
    return found[0]


def test_cluster_launcher_config_shape():
    cfg = launcher_config()
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types",
                "head_node_type", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"):
        assert key in cfg, key
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    for name, spec in types.items():
        assert {"resources", "node_config"} <= set(spec), name
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    assert any(t["resources"].get("GPU", 0) >= 1 for t in workers.values()), "no GPU worker type"
    assert any("pip install -e ." in c for c in cfg["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in c for c in
               cfg["head_start_ray_commands"][-1:] + cfg["worker_start_ray_commands"][-1:])


def test_cluster_launcher_config_validates_against_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    if not schema_path.is_file():
        pytest.skip("this Ray has no ray-schema.json")
    jsonschema.validate(launcher_config(), json.loads(schema_path.read_text()))


def test_rayjob_shape():
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    entry = job["spec"]["entrypoint"]
    assert "gunn-search" in entry and "--address" in entry
    spec = job["spec"]["rayClusterSpec"]
    assert "headGroupSpec" in spec
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                         for c in g["template"]["spec"]["containers"])]
    assert gpu_groups, "no worker group with an nvidia.com/gpu limit"
    assert spec.get("authOptions", {}).get("mode") == "token"


def test_rayjob_entrypoint_parses():
    argvs = gunn_search_argvs(shell_commands(rayjob()["spec"]["entrypoint"]))
    assert len(argvs) == 1
    parsed = parse_gunn_search(argvs[0])
    assert parsed.address == "auto" and parsed.tracking_uri.startswith("http")
    check_space_names(parsed)


# --- command lines ------------------------------------------------------------------------------

def doc_commands(path: Path) -> list[list[str]]:
    return [c for b in blocks(path, "bash") for c in shell_commands(b)]


@pytest.mark.parametrize("path", [CLUSTER_MD, README], ids=["cluster.md", "README.md"])
def test_every_gunn_search_command_parses(path):
    argvs = gunn_search_argvs(doc_commands(path))
    assert argvs, f"no gunn-search command in {path.name}"
    for argv in argvs:
        check_space_names(parse_gunn_search(argv))


def test_cluster_doc_covers_the_cluster_flags():
    parsed = [parse_gunn_search(a) for a in gunn_search_argvs(doc_commands(CLUSTER_MD))]
    assert any(p.address == "auto" for p in parsed)
    assert any(p.address and p.address not in ("auto",) for p in parsed)  # HOST:PORT
    assert any(p.resume for p in parsed)
    assert any(p.gpus_per_trial == 0.25 for p in parsed)
    assert any(p.storage.startswith(("s3://", "gs://")) for p in parsed)
    assert any((p.tracking_uri or "").startswith("http://") for p in parsed)


def click_command(group, argv: list[str]):
    """The click command an argv names in a click group, and its own arguments."""
    import click

    cmd, rest = group, list(argv)
    while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


def check_click(group, prog: str, argv: list[str]) -> None:
    import click

    cmd, rest = click_command(group, argv)
    assert cmd is not group, f"{prog} {shlex.join(argv)}: unknown subcommand"
    try:
        cmd.make_context(cmd.name, rest)
    except click.ClickException as e:
        pytest.fail(f"{prog} {shlex.join(argv)}: {e.format_message()}")


def test_mlflow_and_ray_commands_in_cluster_doc_parse():
    from mlflow.cli import cli as mlflow_cli
    from ray.scripts.scripts import cli as ray_cli

    cfg = launcher_config()
    commands = doc_commands(CLUSTER_MD) + [
        c for line in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
        for c in shell_commands(line)]
    seen = {"mlflow server": 0, "ray start": 0}
    for cmd in commands:
        if cmd[0] == "mlflow":
            check_click(mlflow_cli, "mlflow", cmd[1:])
            seen["mlflow server"] += cmd[1] == "server"
        elif cmd[0] == "ray":
            check_click(ray_cli, "ray", cmd[1:])
            seen["ray start"] += cmd[1] == "start"
    assert all(seen.values()), seen


def test_mlflow_server_binds_loopback_unless_allowed_hosts_given():
    for cmd in doc_commands(CLUSTER_MD):
        if cmd[:2] != ["mlflow", "server"]:
            continue
        host = cmd[cmd.index("--host") + 1] if "--host" in cmd else "127.0.0.1"
        if host != "127.0.0.1":
            assert "--allowed-hosts" in cmd, shlex.join(cmd)
        assert any(a.startswith(("postgresql://", "mysql://")) for a in cmd), shlex.join(cmd)


def test_readme_space_and_train_config_examples_are_valid():
    """The README's space file is a valid space; its gunn-train config is a valid config and, as
    any config without distributions that selects on the validation split, a valid space of one
    point."""
    from gunn_search.space import parse_space
    from trainers.config import parse_config

    docs = [d for d in yaml_docs(README) if isinstance(d, dict)]
    spaces = [d for d in docs if "search" in d and "model" in d]  # not a search-section snippet
    configs = [d for d in docs if "model" in d and "search" not in d]
    assert spaces and configs
    for d in spaces:
        space = parse_space(d, "README space")
        assert "optim.momentum" in space.searched() and "batch_size" in space.searched()
    from gunn_search.space.schema import SearchSettings
    for d in docs:  # a search section shown on its own (the Pareto example)
        if set(d) == {"search"}:
            assert len(SearchSettings.model_validate(d["search"]).objective_list) > 1
    for d in configs:
        parse_config(d, "README config")
        d["data"]["split"] = "search"  # the README's is the final run (test set): not a search
        one = parse_space(d, "README config")
        assert not one.searched() and one.search.num_samples == 1


def test_no_file_points_at_notes_outside_the_project():
    """What the code relies on from the paper, the authors' code and measured runtime behaviour
    lives in docs/, not in notes beside the checkout."""
    names = ("PAPER-NOTES", "RUNTIME-NOTES", "../shared", "shared/paper.txt")
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".yaml", ".toml", ".cfg", ".txt") or any(
                part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n in text]
    assert not offenders, offenders


def test_the_readme_layout_names_every_module():
    """A new module gets its line in the README's Layout section."""
    text = README.read_text()
    layout = text[text.index("## Layout"):text.index("## Security defaults")]
    modules = [p for pkg in ("trainers", "gunn_search") for p in (ROOT / pkg).rglob("*.py")
               if p.stem not in ("__init__", "__main__")]
    missing = [str(p.relative_to(ROOT)) for p in modules if f"{p.stem}.py" not in layout]
    assert not missing, missing

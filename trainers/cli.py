"""`gunn-train --config run.yaml`: train one GUNN/SUNN network from a YAML config.

This module is the pure-PyTorch command (also `python -m trainers.cli`); the installed
`gunn-train` script wraps it with MLflow logging (gunn_search.cli.train).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from trainers.checkpoint import CHECKPOINT_NAME
from trainers.config import TrainConfig, load_config, parse_config
from trainers.errors import DiskFullError, TrainerError, UsageError, first_line, report
from trainers.loop import EpochCallback, TrainResult, train


def build_parser(prog: str = "gunn-train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train a GUNN/SUNN network from a YAML config.")
    p.add_argument("--config", required=True, help="YAML training config")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue a run: from CHECKPOINT, or from OUT_DIR/checkpoint.pt if omitted")
    p.add_argument("--resume-changed", action="store_true",
                   help="with --resume: accept a config that differs from the checkpoint's in "
                        "what it trains (e.g. --epochs, which moves the lr drops); the change is "
                        "printed on stderr and recorded in the checkpoint")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--data-dir", help="override data.data_dir")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--device", help="override the device: auto, cpu, cuda, cuda:N")
    p.add_argument("--out", help="override out_dir (checkpoints and metrics.jsonl)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Load the config file and apply the command-line overrides (re-validated)."""
    cfg = load_config(args.config)
    data = cfg.model_dump(mode="json")
    if args.epochs is not None:
        data["epochs"] = args.epochs
    if args.data_dir is not None:
        data["data"]["data_dir"] = args.data_dir
    if args.download:
        data["data"]["download"] = True
    if args.device is not None:
        data["device"] = args.device
    if args.out is not None:
        data["out_dir"] = args.out
    return parse_config(data, source="command line")


def resume_path(cfg: TrainConfig, flag: str | None) -> Path | None:
    if flag is None:
        return None
    if flag:
        return Path(flag)
    if not cfg.out_dir:
        raise UsageError("--resume without a path needs out_dir in the config")
    path = Path(cfg.out_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise UsageError(f"--resume: no checkpoint at {path} (nothing to resume)")
    return path


def run(args: argparse.Namespace, on_epoch: EpochCallback | None = None) -> tuple[TrainConfig, TrainResult]:
    cfg = config_from_args(args)
    if args.resume_changed and args.resume is None:
        raise UsageError("--resume-changed needs --resume")
    resume = resume_path(cfg, args.resume)
    try:
        result = train(cfg, on_epoch=on_epoch, resume=resume, resume_changed=args.resume_changed)
    except ValueError as e:  # e.g. a CUDA device asked for on a machine without one
        raise UsageError(first_line(e)) from None
    return cfg, result


def summary(cfg: TrainConfig, result: TrainResult) -> dict:
    """The final result printed on stdout as JSON: the last epoch's metrics (`final`) and the
    best evaluation accuracy with its epoch (`best_val_acc`, `best_val_acc_epoch`; `test_` on a
    final split), which is what the paper's authors report."""
    return {"status": result.status, "epochs": result.epochs_completed,
            "final": result.final, **result.best,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "message": result.message}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, result = run(args)
    except DiskFullError as e:  # not the user's mistake: exit 1; the last checkpoint is kept
        return report("gunn-train", e, "; the last checkpoint is kept: free space, then --resume")
    except TrainerError as e:
        return report("gunn-train", e)
    print(json.dumps(summary(cfg, result), indent=2))
    return 0 if result.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())

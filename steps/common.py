"""What every step's command line shares: Hydra overrides from one string, clean failures."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence

from omegaconf import DictConfig

from valuation.config import configure_mlflow, load_config


def split_overrides(text: str | None) -> list[str]:
    """`-P overrides="a=1 b='x y'"` arrives as one string; Hydra wants a list."""
    return shlex.split(text or "")


def step_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--overrides", default="", help="Hydra overrides, e.g. \"model=gbr cv.folds=0\"")
    return parser


def load_step_config(overrides: Sequence[str]) -> DictConfig:
    cfg = load_config(overrides)
    configure_mlflow(cfg)
    return cfg


def run_cli(entry: Callable[[], None]) -> None:
    """Run a step; a bad input (ValueError and subclasses) ends with one clear line, exit code 2."""
    try:
        entry()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

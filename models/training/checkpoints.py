"""Checkpoints of a training stage, so an interrupted `pixelcast train` resumes where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

RECIPE = "recipe"


class Stateful(Protocol):
    """A module, optimizer or learning-rate schedule: anything torch saves through its state dict."""

    def state_dict(self) -> dict[str, Any]: ...  # noqa: D102

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...  # noqa: D102


def training_state(parts: dict[str, Stateful], rng: np.random.Generator, step: int, **extra: Any) -> dict[str, Any]:
    """What a stage saves to resume exactly: its parts' state dicts, both random generators, the step."""
    return {
        **{name: part.state_dict() for name, part in parts.items()},
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "step": step,
        **extra,
    }


def restore_training_state(state: dict[str, Any], parts: dict[str, Stateful], rng: np.random.Generator) -> int:
    """Load a `training_state` back into `parts` and the generators; returns the step it was saved at."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def save_checkpoint(path: Path, state: dict[str, Any], recipe: dict[str, Any] | None = None) -> None:
    """Write atomically: a crash mid-write never leaves a broken checkpoint behind.

    `recipe` is stored with the state, for `load_checkpoint` to compare with the recipe it resumes under.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({**state, RECIPE: recipe}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, recipe: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The saved state, or None when there is none.

    With `recipe`, a state saved under another recipe (by `save_checkpoint`) counts as none, so
    a changed config starts the stage over instead of resuming a run it would not reproduce.
    """
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written by save_checkpoint
    if recipe is not None and state.get(RECIPE) != recipe:
        print(f"{path.name}: saved under another recipe; starting this stage over")
        return None
    return state

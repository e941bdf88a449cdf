"""`SceneSpec`: what one world scene shows, and the vocabularies of its attributes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

SUBJECTS: tuple[str, ...] = (
    "ocean",
    "forest",
    "city",
    "mountains",
    "desert",
    "night_sky",
    "waterfall",
    "volcano",
)
"""What the scene is of; each has its own layout and shapes."""

PALETTES: tuple[str, ...] = ("dawn", "noon", "sunset", "dusk", "night", "neon")
"""Time of day / colour grading of the whole frame."""

WEATHERS: tuple[str, ...] = ("clear", "rain", "snow", "fog")
"""Weather overlay: falling streaks or flakes, overcast or hazy grading."""

PACES: tuple[str, ...] = ("calm", "lively")
"""Speed of all motion in the scene (waves, clouds, weather, camera)."""

CAMERAS: tuple[str, ...] = ("static", "pan_left", "pan_right", "zoom_in")
"""Camera motion over the scene."""

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "subject": SUBJECTS,
    "palette": PALETTES,
    "weather": WEATHERS,
    "pace": PACES,
    "camera": CAMERAS,
}
"""Attribute name -> its vocabulary, in `SceneSpec` field order."""


@dataclass(frozen=True)
class SceneSpec:
    """One scene of the procedural world; every field is a value of its vocabulary in `ATTRIBUTES`."""

    subject: str = "ocean"
    palette: str = "noon"
    weather: str = "clear"
    pace: str = "calm"
    camera: str = "static"

    def __post_init__(self) -> None:
        for name, vocabulary in ATTRIBUTES.items():
            value = getattr(self, name)
            if value not in vocabulary:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(vocabulary)}")

    def key(self) -> str:
        """A stable string id, e.g. ``ocean/sunset/clear/calm/static``."""
        return "/".join(getattr(self, name) for name in ATTRIBUTES)

    @classmethod
    def from_key(cls, key: str) -> SceneSpec:
        """Inverse of `key`."""
        parts = key.split("/")
        if len(parts) != len(ATTRIBUTES):
            raise ValueError(f"bad scene key {key!r}: expected {len(ATTRIBUTES)} parts separated by '/'")
        return cls(*parts)

    def to_dict(self) -> dict[str, str]:
        """Attribute name -> value."""
        return asdict(self)

    def replace(self, **changes: str) -> SceneSpec:
        """A copy with some attributes changed (validated)."""
        return SceneSpec(**{**self.to_dict(), **changes})

    @classmethod
    def random(cls, rng: np.random.Generator) -> SceneSpec:
        """A uniformly random spec drawn with `rng`."""
        return cls(*(vocabulary[int(rng.integers(len(vocabulary)))] for vocabulary in ATTRIBUTES.values()))


def all_specs() -> Iterator[SceneSpec]:
    """Every combination of attribute values, in a fixed order."""
    for values in itertools.product(*ATTRIBUTES.values()):
        yield SceneSpec(*values)


def num_specs() -> int:
    """How many distinct specs there are."""
    return int(np.prod([len(v) for v in ATTRIBUTES.values()]))

"""Experiment definitions: validation of what a product team posts, and their store in Redis.

A definition names the variations a viewer may get (each a policy plus optional engine settings), how
traffic is split (weights, coverage, an optional targeting condition in GrowthBook's condition syntax),
the metrics to read with their goal direction, and how to analyse them (frequentist, optionally
sequential, or Bayesian). Definitions live in one Redis HASH, so they survive restarts and every server
sees the same ones; the experiment's own data (exposures, statistics, snapshots) live under its
hash tag ``pc:{x:<key>}:...`` (see ``statistics``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import redis.asyncio as aioredis
from growthbook.core import evalCondition

from personalization.context import DEVICES, TIMES_OF_DAY
from personalization.errors import PixelcastError
from personalization.policies import POLICIES

#: HASH: experiment key -> definition JSON (``Experiment.to_json``). Not hash-tagged: one small key.
DEFINITIONS_KEY = "pc:experiments"

Mode = Literal["frequentist", "bayesian"]
Goal = Literal["increase", "decrease"]
Status = Literal["running", "stopped"]

_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VARIATION_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_WEIGHT_TOLERANCE = 1e-6

#: Metrics an experiment can read, with the goal a product team most often has for each.
METRICS: dict[str, Goal] = {
    "watch_seconds_per_session": "increase",
    "watch_seconds": "increase",
    "skips_per_minute": "decrease",
    "likes_per_minute": "increase",
    "steers_per_minute": "decrease",
    "return_24h": "increase",
}

#: Viewer attributes a targeting condition may test (``assignment.viewer_attributes`` sets them).
ATTRIBUTES: dict[str, tuple[Any, ...] | None] = {
    "id": None,
    "device": DEVICES,
    "new": (True, False),
    "returning": (True, False),
    "time_of_day": TIMES_OF_DAY,
}

#: Operators of GrowthBook's condition language that need no saved groups.
CONDITION_OPERATORS = frozenset(
    "$eq $ne $lt $lte $gt $gte $exists $in $nin $ini $nini $all $alli $not $and $or $nor $regex $regexi "
    "$notRegex $notRegexi $elemMatch $size $type $veq $vne $vgt $vgte $vlt $vlte".split()
)

ENGINE_SETTINGS: dict[str, tuple[int, int]] = {"steps": (1, 4), "fps": (1, 60)}
"""Engine settings a variation may set, with their allowed ranges."""


class ExperimentError(PixelcastError):
    """A definition (or request about one) that cannot be accepted; ``field`` names the culprit."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownExperiment(PixelcastError):
    """No experiment has this key."""

    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no experiment {key!r}")
        self.key = key


@dataclass(frozen=True)
class Variation:
    """One arm: the policy its viewers get, its share of traffic, and optional engine settings."""

    id: str
    policy: str
    weight: float
    settings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """A metric to read, and whether the team wants it to go up or down."""

    name: str
    goal: Goal = "increase"


@dataclass(frozen=True)
class Experiment:
    """A validated experiment definition plus its lifecycle state."""

    key: str
    variations: tuple[Variation, ...]
    seed: str = ""
    hash_version: int = 2
    coverage: float = 1.0
    condition: dict[str, Any] | None = None
    metrics: tuple[Metric, ...] = ()
    mode: Mode = "frequentist"
    sequential: bool = False
    alpha: float = 0.05
    snapshot_every: int = 100
    name: str = ""
    status: Status = "running"
    created_at: float = 0.0
    stopped_at: float | None = None

    @property
    def hash_seed(self) -> str:
        """The seed GrowthBook hashes with: the definition's, else the key (as GrowthBook does)."""
        return self.seed or self.key

    @property
    def weights(self) -> list[float]:
        """Traffic share of each variation, in order."""
        return [v.weight for v in self.variations]

    def variation(self, variation_id: str) -> Variation:
        """The variation with this id (KeyError if none)."""
        for variation in self.variations:
            if variation.id == variation_id:
                return variation
        raise KeyError(variation_id)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (what the API returns and the store keeps)."""
        data = asdict(self)
        data["variations"] = [asdict(v) for v in self.variations]
        data["metrics"] = [asdict(m) for m in self.metrics]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Experiment:
        """Read back what ``to_json`` wrote (trusted: it was validated when created)."""
        return cls(
            key=data["key"],
            variations=tuple(Variation(**v) for v in data["variations"]),
            seed=data.get("seed", ""),
            hash_version=int(data.get("hash_version", 2)),
            coverage=float(data.get("coverage", 1.0)),
            condition=data.get("condition"),
            metrics=tuple(Metric(**m) for m in data.get("metrics", ())),
            mode=data.get("mode", "frequentist"),
            sequential=bool(data.get("sequential", False)),
            alpha=float(data.get("alpha", 0.05)),
            snapshot_every=int(data.get("snapshot_every", 100)),
            name=data.get("name", ""),
            status=data.get("status", "running"),
            created_at=float(data.get("created_at", 0.0)),
            stopped_at=data.get("stopped_at"),
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExperimentError(where, f"must be a finite number, got {json.dumps(value)[:40]}")
    return float(value)


def _validate_condition(condition: Any, where: str = "condition") -> None:
    """Structural check of a GrowthBook condition on ``ATTRIBUTES``, then a trial evaluation."""

    def walk(node: Any, path: str, top: bool) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]", top)
            return
        if not isinstance(node, dict):
            return
        for name, value in node.items():
            if not isinstance(name, str):
                raise ExperimentError(path, "keys must be strings")
            if name.startswith("$"):
                if name not in CONDITION_OPERATORS:
                    raise ExperimentError(f"{path}.{name}", "unknown operator")
                walk(value, f"{path}.{name}", top and name in ("$and", "$or", "$nor", "$not"))
            elif top:
                if name not in ATTRIBUTES:
                    known = ", ".join(ATTRIBUTES)
                    raise ExperimentError(f"{path}.{name}", f"unknown viewer attribute (known: {known})")
                walk(value, f"{path}.{name}", False)
            else:
                walk(value, f"{path}.{name}", False)

    if not isinstance(condition, dict):
        raise ExperimentError(where, "must be a JSON object in GrowthBook's condition syntax")
    walk(condition, where, True)
    for regex in _regexes(condition):
        try:
            re.compile(regex)
        except re.error as error:
            raise ExperimentError(where, f"bad regular expression {regex!r}: {error}") from None
    try:
        sample = {"id": "x", "device": "mobile", "new": True, "returning": False, "time_of_day": "night"}
        evalCondition(sample, condition)
    except Exception as error:  # noqa: BLE001 - whatever the SDK trips on, the condition is bad
        raise ExperimentError(where, f"cannot be evaluated: {error}") from None


def _regexes(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for item in node for r in _regexes(item)]
    if isinstance(node, dict):
        found = [str(v) for k, v in node.items() if k in ("$regex", "$regexi", "$notRegex", "$notRegexi")]
        return found + [r for v in node.values() for r in _regexes(v)]
    return []


_FIELDS = {
    "key",
    "name",
    "seed",
    "hash_version",
    "variations",
    "coverage",
    "condition",
    "metrics",
    "mode",
    "sequential",
    "alpha",
    "snapshot_every",
}


def parse_definition(data: Any, *, now: float | None = None) -> Experiment:
    """Validate a posted definition; raise ``ExperimentError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise ExperimentError("body", "must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ExperimentError(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    key = data.get("key")
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ExperimentError("key", "must be 1-64 letters, digits, '_', '.' or '-'")
    seed = data.get("seed", "")
    if not isinstance(seed, str) or len(seed) > 128:
        raise ExperimentError("seed", "must be a string of at most 128 characters")
    hash_version = data.get("hash_version", 2)
    if hash_version not in (1, 2) or isinstance(hash_version, bool):
        raise ExperimentError("hash_version", "must be 1 or 2 (GrowthBook's hashing versions; 2 is the default)")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise ExperimentError("name", "must be a string of at most 200 characters")

    raw_variations = data.get("variations")
    if not isinstance(raw_variations, list) or not 2 <= len(raw_variations) <= 10:
        raise ExperimentError("variations", "must be a list of 2 to 10 variations")
    variations: list[Variation] = []
    for i, raw in enumerate(raw_variations):
        where = f"variations[{i}]"
        if not isinstance(raw, dict):
            raise ExperimentError(where, "must be an object with id, policy and weight")
        extra = sorted(set(raw) - {"id", "policy", "weight", "settings"})
        if extra:
            raise ExperimentError(f"{where}.{extra[0]}", "unknown field (known: id, policy, weight, settings)")
        vid = raw.get("id")
        if not isinstance(vid, str) or not _VARIATION_RE.fullmatch(vid):
            raise ExperimentError(f"{where}.id", "must be 1-32 letters, digits, '_' or '-'")
        if any(v.id == vid for v in variations):
            raise ExperimentError(f"{where}.id", f"duplicate variation id {vid!r}")
        policy = raw.get("policy")
        if policy not in POLICIES:
            raise ExperimentError(f"{where}.policy", f"unknown policy; expected one of {', '.join(POLICIES)}")
        weight = _number(raw.get("weight"), f"{where}.weight")
        if not 0.0 <= weight <= 1.0:
            raise ExperimentError(f"{where}.weight", "must be between 0 and 1")
        settings = raw.get("settings", {}) or {}
        if not isinstance(settings, dict):
            raise ExperimentError(f"{where}.settings", "must be an object (steps, fps)")
        for setting, value in settings.items():
            if setting not in ENGINE_SETTINGS:
                raise ExperimentError(f"{where}.settings.{setting}", "unknown engine setting (known: steps, fps)")
            low, high = ENGINE_SETTINGS[setting]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ExperimentError(f"{where}.settings.{setting}", f"must be an integer from {low} to {high}")
        variations.append(Variation(vid, policy, weight, dict(settings)))
    total = sum(v.weight for v in variations)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ExperimentError("variations.weight", f"weights must sum to 1, they sum to {total:g}")

    coverage = _number(data.get("coverage", 1.0), "coverage")
    if not 0.0 < coverage <= 1.0:
        raise ExperimentError("coverage", "must be in (0, 1]")
    condition = data.get("condition")
    if condition is not None:
        _validate_condition(condition)
        if not condition:
            condition = None

    raw_metrics = data.get("metrics")
    if raw_metrics is None:
        metrics = tuple(Metric(name, goal) for name, goal in METRICS.items())
    else:
        if not isinstance(raw_metrics, list) or not raw_metrics:
            raise ExperimentError("metrics", "must be a non-empty list")
        parsed: list[Metric] = []
        for i, raw in enumerate(raw_metrics):
            where = f"metrics[{i}]"
            if isinstance(raw, str):
                raw = {"name": raw}
            if not isinstance(raw, dict) or raw.get("name") not in METRICS:
                raise ExperimentError(f"{where}.name", f"unknown metric; expected one of {', '.join(METRICS)}")
            goal = raw.get("goal", METRICS[raw["name"]])
            if goal not in ("increase", "decrease"):
                raise ExperimentError(f"{where}.goal", "must be 'increase' or 'decrease'")
            if any(m.name == raw["name"] for m in parsed):
                raise ExperimentError(f"{where}.name", "duplicate metric")
            parsed.append(Metric(raw["name"], goal))
        metrics = tuple(parsed)

    mode = data.get("mode", "frequentist")
    if mode not in ("frequentist", "bayesian"):
        raise ExperimentError("mode", "must be 'frequentist' or 'bayesian'")
    sequential = data.get("sequential", False)
    if not isinstance(sequential, bool):
        raise ExperimentError("sequential", "must be true or false")
    if sequential and mode != "frequentist":
        raise ExperimentError("sequential", "sequential testing needs mode 'frequentist'")
    alpha = _number(data.get("alpha", 0.05), "alpha")
    if not 0.0 < alpha < 0.5:
        raise ExperimentError("alpha", "must be in (0, 0.5)")
    snapshot_every = data.get("snapshot_every", 100)
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or not 1 <= snapshot_every <= 10**7:
        raise ExperimentError("snapshot_every", "must be a whole number of exposures, at least 1")
    return Experiment(
        key=key,
        variations=tuple(variations),
        seed=seed,
        hash_version=hash_version,
        coverage=coverage,
        condition=condition,
        metrics=metrics,
        mode=mode,
        sequential=sequential,
        alpha=alpha,
        snapshot_every=snapshot_every,
        name=name,
        created_at=time.time() if now is None else now,
    )


class ExperimentStore:
    """Experiment definitions in Redis: create (once per key), list, get, stop."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def create(self, experiment: Experiment) -> Experiment:
        """Store a new experiment; ``ExperimentError`` on ``key`` if one with that key exists (even stopped)."""
        created = await self.redis.hsetnx(DEFINITIONS_KEY, experiment.key, json.dumps(experiment.to_json()))
        if not created:
            raise ExperimentError("key", f"an experiment {experiment.key!r} exists already")
        return experiment

    async def get(self, key: str) -> Experiment:
        """The experiment with this key; raises ``UnknownExperiment``."""
        raw = await self.redis.hget(DEFINITIONS_KEY, key) if _KEY_RE.fullmatch(key or "") else None
        if raw is None:
            raise UnknownExperiment(key)
        return Experiment.from_json(json.loads(raw))

    async def all(self) -> list[Experiment]:
        """Every experiment, oldest first (running and stopped)."""
        raw = await self.redis.hgetall(DEFINITIONS_KEY)
        experiments = [Experiment.from_json(json.loads(value)) for value in raw.values()]
        return sorted(experiments, key=lambda e: (e.created_at, e.key))

    async def running(self) -> list[Experiment]:
        """The running experiments, oldest first: a session joins the first whose traffic it falls in."""
        return [e for e in await self.all() if e.status == "running"]

    async def stop(self, key: str, *, now: float | None = None) -> Experiment:
        """Stop an experiment (idempotent): it assigns nobody from now on; its data stay readable."""
        experiment = await self.get(key)
        if experiment.status == "stopped":
            return experiment
        stopped = replace(experiment, status="stopped", stopped_at=time.time() if now is None else now)
        await self.redis.hset(DEFINITIONS_KEY, key, json.dumps(stopped.to_json()))
        return stopped

"""Experiment statistics: per-variation sufficient statistics in Redis, analysed with gbstats.

Each exposed viewer has one row of running totals in the experiment (``pc:{x:<key>}:viewers``, field =
viewer id, value ``"<variation> <exposed at> <last feedback id> c s w k l t r"``):

====  =====================================================================
c     watch seconds before exposure (the CUPED covariate; 0 for new viewers)
s     sessions since exposure (the exposing one included)
w     watch seconds since exposure
k     skips, ``l`` likes, ``t`` steers since exposure
r     1 once the viewer started another session within 24 h of exposure
====  =====================================================================

and every variation keeps the sufficient statistics of those rows in ``pc:{x:<key>}:stats``: the count
``<var>|n``, sums ``<var>|S<x>``, sums of squares ``<var>|Q<x>`` and the cross products that ratio metrics
and CUPED need (``<var>|P<xy>``). One script call per event updates the row and moves every sum by the
difference between the row's new and old values, atomically, so results read O(variations) numbers
whatever the number of events. Feedback events are idempotent on their event-stream id (a row
remembers the newest one applied, as profiles do); session and steer events on their own ids, kept in
``pc:{x:<key>}:seen``.

Analysis builds gbstats statistics from those sums (``SampleMeanStatistic``, ``RatioStatistic``,
``ProportionStatistic``, ``RegressionAdjustedStatistic`` for CUPED) and runs gbstats' tests
(``TwoSidedTTest``, ``SequentialTwoSidedTTest``, ``EffectBayesianABTest``) and ``check_srm``; the only
statistics added here are Holm's adjustment of p-values for more than two arms.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm

from personalization.experiments import Experiment, Metric
from personalization.lua import LuaValue, source

#: Per-viewer row components (see the module docstring).
COMPONENTS = ("c", "s", "w", "k", "l", "t", "r")
#: Cross products kept per variation: ratio metrics (numerator x denominator) and CUPED (covariate x watch).
PRODUCTS = (("s", "w"), ("w", "k"), ("w", "l"), ("w", "t"), ("c", "w"))

SRM_ALERT = 0.001
"""An SRM p-value below this means the split is broken: the results must not be trusted."""

RETURN_WINDOW = 86_400.0
"""A session this many seconds after exposure or sooner counts as a return."""

SEQUENTIAL_TUNING = 5000
"""gbstats' ``sequential_tuning_parameter``: the sample size the sequential intervals are tightest at."""

SNAPSHOTS_MAX = 1000
SNAPSHOT_DAYS = 86_400.0
"""A snapshot of cumulative lifts is kept every ``snapshot_every`` exposures, and at least once a day."""

#: How each metric is built from a row: (kind, numerator, denominator, denominator scale).
METRIC_SPECS: dict[str, tuple[str, str, str, float]] = {
    "watch_seconds_per_session": ("ratio", "w", "s", 1.0),
    "watch_seconds": ("mean", "w", "", 1.0),
    "skips_per_minute": ("ratio", "k", "w", 1 / 60),
    "likes_per_minute": ("ratio", "l", "w", 1 / 60),
    "steers_per_minute": ("ratio", "t", "w", 1 / 60),
    "return_24h": ("proportion", "r", "", 1.0),
}
#: Metrics with a pre-exposure covariate: CUPED figures are reported for them.
CUPED_METRICS = {"watch_seconds": "c"}


def _tag(key: str) -> str:
    return f"pc:{{x:{key}}}"


def viewers_key(key: str) -> str:
    """HASH: viewer id -> the viewer's row (JSON) in experiment ``key``."""
    return f"{_tag(key)}:viewers"


def stats_key(key: str) -> str:
    """HASH: the sufficient statistics per variation, plus ``total`` exposures."""
    return f"{_tag(key)}:stats"


def seen_key(key: str) -> str:
    """SET: ids of the session and steer events already counted."""
    return f"{_tag(key)}:seen"


def snapshots_key(key: str) -> str:
    """LIST: JSON snapshots of cumulative lifts, oldest first."""
    return f"{_tag(key)}:snapshots"


LUA_CONSTANTS: dict[str, LuaValue] = {
    "COMPONENTS": "{" + ", ".join(f"'{c}'" for c in COMPONENTS) + "}",
    "PRODUCTS": "{" + ", ".join(f"{{'{a}', '{b}'}}" for a, b in PRODUCTS) + "}",
    "RETURN_WINDOW": RETURN_WINDOW,
}
"""What ``lua/record_metric.lua`` reads (the components and products as Lua tables)."""


@dataclass(frozen=True)
class VariationStats:
    """One variation's sufficient statistics: ``n``, and sums ``S``, squares ``Q``, products ``P`` by name."""

    n: int
    sums: Mapping[str, float]
    squares: Mapping[str, float]
    products: Mapping[str, float]

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], variation: str) -> VariationStats:
        """Read a variation's fields from the stats hash."""
        prefix = f"{variation}|"

        def get(name: str) -> float:
            return float(fields.get(prefix + name, 0) or 0)

        return cls(
            n=int(get("n")),
            sums={c: get("S" + c) for c in COMPONENTS},
            squares={c: get("Q" + c) for c in COMPONENTS},
            products={a + b: get("P" + a + b) for a, b in PRODUCTS},
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, float]]) -> VariationStats:
        """The same statistics from raw per-viewer rows (tests and the A/A check use it)."""
        return cls(
            n=len(rows),
            sums={c: float(sum(r[c] for r in rows)) for c in COMPONENTS},
            squares={c: float(sum(r[c] ** 2 for r in rows)) for c in COMPONENTS},
            products={a + b: float(sum(r[a] * r[b] for r in rows)) for a, b in PRODUCTS},
        )

    def mean_statistic(self, component: str, scale: float = 1.0) -> SampleMeanStatistic:
        """A gbstats ``SampleMeanStatistic`` of one component (optionally scaled, e.g. seconds to minutes)."""
        return SampleMeanStatistic(
            n=self.n, sum=self.sums[component] * scale, sum_squares=self.squares[component] * scale * scale
        )

    def product(self, a: str, b: str) -> float:
        """Sum over viewers of ``a * b``."""
        return self.products[a + b] if a + b in self.products else self.products[b + a]

    def statistic(self, metric: str) -> Any:
        """The gbstats statistic of a metric for this variation."""
        kind, num, den, scale = METRIC_SPECS[metric]
        if kind == "mean":
            return self.mean_statistic(num)
        if kind == "proportion":
            return ProportionStatistic(n=self.n, sum=self.sums[num])
        return RatioStatistic(
            n=self.n,
            m_statistic=self.mean_statistic(num),
            d_statistic=self.mean_statistic(den, scale),
            m_d_sum_of_products=self.product(num, den) * scale,
        )

    def adjusted_statistic(self, metric: str) -> RegressionAdjustedStatistic:
        """The CUPED (regression-adjusted) statistic of a metric with a covariate; theta is set by gbstats."""
        covariate = CUPED_METRICS[metric]
        _, num, _, _ = METRIC_SPECS[metric]
        return RegressionAdjustedStatistic(
            n=self.n,
            post_statistic=self.mean_statistic(num),
            pre_statistic=self.mean_statistic(covariate),
            post_pre_sum_of_products=self.product(covariate, num),
            theta=0.0,
        )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error); None entries are left out and stay None."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(present)
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def compare(experiment: Experiment, control: Any, treatment: Any, metric: Metric) -> dict[str, Any]:
    """One variation against control on one metric, with the test the experiment's mode asks for."""
    if experiment.mode == "bayesian":
        result = EffectBayesianABTest(
            control, treatment, EffectBayesianConfig(alpha=experiment.alpha, inverse=metric.goal == "decrease")
        ).compute_result()
        return {
            "lift": _clean(result.expected),
            "ci": _clean(list(result.ci)),
            "chance_to_win": _clean(result.chance_to_win),
            "risk": _clean(list(result.risk)),
            "error": result.error_message,
        }
    if experiment.sequential:
        test: Any = SequentialTwoSidedTTest(
            control,
            treatment,
            SequentialConfig(alpha=experiment.alpha, sequential_tuning_parameter=SEQUENTIAL_TUNING),
        )
    else:
        test = TwoSidedTTest(control, treatment, FrequentistConfig(alpha=experiment.alpha))
    result = test.compute_result()
    return {
        "lift": _clean(result.expected),
        "ci": _clean(list(result.ci)),
        "p_value": _clean(result.p_value),
        "error": result.error_message,
    }


def _verdict(experiment: Experiment, metric: Metric, comparison: Mapping[str, Any]) -> str:
    """``better``, ``worse`` or ``inconclusive`` for the metric's goal."""
    lift = comparison.get("lift")
    if lift is None or comparison.get("error"):
        return "inconclusive"
    if experiment.mode == "bayesian":
        chance = comparison.get("chance_to_win")  # gbstats already turned it round for 'decrease' goals
        if chance is None:
            return "inconclusive"
        return "better" if chance >= 0.95 else "worse" if chance <= 0.05 else "inconclusive"
    p = comparison.get("p_value_adjusted", comparison.get("p_value"))
    if p is None or p >= experiment.alpha:
        return "inconclusive"
    good = lift > 0 if metric.goal == "increase" else lift < 0
    return "better" if good else "worse"


def analyze(experiment: Experiment, stats: Mapping[str, VariationStats]) -> dict[str, Any]:
    """Results JSON of an experiment from its variations' sufficient statistics (O(variations))."""
    variations = experiment.variations
    counts = [stats[v.id].n for v in variations]
    srm_p = float(check_srm(counts, experiment.weights)) if sum(counts) else 1.0
    control = variations[0]
    metrics_out: dict[str, Any] = {}
    for metric in experiment.metrics:
        rows: list[dict[str, Any]] = []
        for variation in variations:
            st = stats[variation.id]
            statistic = st.statistic(metric.name)
            row: dict[str, Any] = {"variation": variation.id, "n": st.n, "mean": _clean(float(statistic.mean))}
            if variation is not control:
                row.update(compare(experiment, stats[control.id].statistic(metric.name), statistic, metric))
                if metric.name in CUPED_METRICS:
                    row["cuped"] = compare(
                        experiment,
                        stats[control.id].adjusted_statistic(metric.name),
                        st.adjusted_statistic(metric.name),
                        metric,
                    )
            rows.append(row)
        if experiment.mode == "frequentist" and len(variations) > 2:
            for part in (None, "cuped"):
                targets = [r if part is None else r.get(part) for r in rows[1:]]
                adjusted = holm([t.get("p_value") if t else None for t in targets])
                for target, p in zip(targets, adjusted):
                    if target is not None:
                        target["p_value_adjusted"] = p
        for row in rows[1:]:
            row["verdict"] = _verdict(experiment, metric, row)
            if "cuped" in row:
                row["cuped"]["verdict"] = _verdict(experiment, metric, row["cuped"])
        metrics_out[metric.name] = {"goal": metric.goal, "variations": rows}
    return {
        "experiment": experiment.key,
        "status": experiment.status,
        "mode": experiment.mode,
        "sequential": experiment.sequential,
        "alpha": experiment.alpha,
        "control": control.id,
        "exposures": sum(counts),
        "variations": [
            {"id": v.id, "policy": v.policy, "weight": v.weight, "settings": v.settings, "n": n}
            for v, n in zip(variations, counts)
        ],
        "srm": {
            "p_value": srm_p,
            "warning": srm_p < SRM_ALERT,
            "message": (
                f"sample ratio mismatch (p = {srm_p:.2g} < {SRM_ALERT}): the split is broken, "
                "do not trust these results"
                if srm_p < SRM_ALERT
                else None
            ),
        },
        "multiple_comparisons": "holm" if experiment.mode == "frequentist" and len(variations) > 2 else None,
        "metrics": metrics_out,
    }


def snapshot(results: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The part of a result kept for the cumulative-lift chart: lifts and intervals per metric and arm."""
    return {
        "ts": now,
        "exposures": results["exposures"],
        "metrics": {
            name: {
                row["variation"]: {"lift": row.get("lift"), "ci": row.get("ci")}
                for row in metric["variations"][1:]
            }
            for name, metric in results["metrics"].items()
        },
    }


def parse_row(raw: str) -> dict[str, Any]:
    """A viewer's row as the script stores it: variation, exposed_at, last feedback id and the components."""
    parts = raw.split(" ")
    row: dict[str, Any] = {"variation": parts[0], "exposed_at": float(parts[1]), "last": parts[2]}
    row.update({c: float(x) for c, x in zip(COMPONENTS, parts[3:])})
    return row


class MetricStore:
    """Records exposures and metric events of experiments in Redis, and reads their statistics back."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._record = redis.register_script(source("record_metric.lua", LUA_CONSTANTS))

    async def record(
        self,
        experiment: str,
        viewer_id: str,
        kind: str,
        event_id: str,
        *,
        variation: str = "",
        value: float = 0.0,
        ts: float | None = None,
    ) -> tuple[int, int]:
        """One script call: ``(applied, total exposures)``; see ``lua/record_metric.lua`` for the kinds and returns."""
        keys = [viewers_key(experiment), stats_key(experiment), seen_key(experiment)]
        args = [viewer_id, variation, kind, event_id, repr(float(value)), repr(time.time() if ts is None else ts)]
        applied, total = await self._record(keys=keys, args=args)
        return int(applied), int(total)

    async def stats(self, experiment: Experiment) -> dict[str, VariationStats]:
        """Every variation's sufficient statistics (one HGETALL)."""
        fields = cast(dict[str, str], await self.redis.hgetall(stats_key(experiment.key)))
        return {v.id: VariationStats.from_fields(fields, v.id) for v in experiment.variations}

    async def rows(self, experiment: str) -> dict[str, dict[str, Any]]:
        """Every exposed viewer's row (for tests and audits; O(viewers))."""
        raw = cast(dict[str, str], await self.redis.hgetall(viewers_key(experiment)))
        return {viewer: parse_row(row) for viewer, row in raw.items()}

    async def add_snapshot(self, experiment: str, entry: Mapping[str, Any]) -> None:
        """Append a cumulative-lift snapshot (the oldest go once there are ``SNAPSHOTS_MAX``)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(snapshots_key(experiment), json.dumps(entry))
            pipe.ltrim(snapshots_key(experiment), -SNAPSHOTS_MAX, -1)
            await pipe.execute()

    async def snapshots(self, experiment: str) -> list[dict[str, Any]]:
        """The snapshots, oldest first."""
        return [json.loads(s) for s in await self.redis.lrange(snapshots_key(experiment), 0, -1)]

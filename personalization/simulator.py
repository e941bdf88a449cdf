"""A viewer simulator: synthetic viewers with hidden preferences react to scenes; policies learn online.

Each simulated viewer has a hidden utility for every attribute value, ``N(0, 1) * weight[attr]``
(the subject matters most, the camera least), plus a time-of-day shift of the palette utilities, so
the utility of a scene is ``bias + sum of its values' utilities``. Per segment the viewer's mood adds
``N(0, mood_sd)``; then the viewer

- skips with probability ``sigmoid(-slope * u)`` after watching 5-50% of the segment (a dwell event
  for what it watched, then a skip), or with probability ``lapse`` regardless (distracted);
- otherwise watches the whole segment (dwell) and likes it with probability
  ``like_max * sigmoid(slope * (u - like_threshold))`` (likes stay rare: at most ``like_max``).

The policy sees only these events; they update an in-memory ``ProfileState`` with exactly the
reward mapping and arithmetic of the Redis apply script (``rewards.feedback_increments``). Rewards are
``rewards.feedback_reward`` (watched fraction, +2 per like, 0 for the skip itself). The oracle shows
each viewer's best scene for the current context; regret is the oracle's expected reward minus the
expected reward of the scene shown (expectations over mood and lapse, by Gauss-Hermite quadrature).

Because utilities add up over attributes and every event updates all five attribute values of the
scene, the problem is factored (24 values to learn, not 1,536 scenes), which is what Thompson
sampling over attribute values exploits.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from personalization.context import DEVICES, TIMES_OF_DAY, Context
from personalization.messages import FeedbackKind
from personalization.policies import POLICIES, Policy, get_policy
from personalization.profiles import ProfileState
from personalization.rewards import DWELL_FULL_SECONDS, feedback_reward
from personalization.wishes import Wishes

Vocabulary = Mapping[str, Sequence[str]]
TARGET_SEGMENT = 20
TARGET_FRACTION = 0.8
_DEFAULT_WEIGHTS = {"subject": 1.5, "palette": 0.6, "weather": 0.5, "pace": 0.3, "camera": 0.25}


@dataclass(frozen=True)
class ViewerModel:
    """How simulated viewers behave (see the module docstring).

    Defaults: what a scene is of matters most (subject weight 1.5, camera 0.25); ``bias`` 0.5 makes a
    random scene get skipped about 40% of the time and the viewer's best one about 2%; likes are
    rare (at most 30% of segments, only for scenes well above average); mood noise 0.5 and 5% lapses
    keep single reactions unreliable.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    default_weight: float = 0.3
    bias: float = 0.5
    mood_sd: float = 0.5
    slope: float = 1.5
    like_threshold: float = 1.5
    like_max: float = 0.3
    lapse: float = 0.05
    skip_watch: tuple[float, float] = (0.05, 0.5)
    context_sd: float = 0.4
    context_attribute: str = "palette"
    session_segments: int = 10

    def weight(self, attr: str) -> float:
        """Importance of an attribute to the viewers."""
        return float(self.weights.get(attr, self.default_weight))


def _sigmoid(x: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
    return result


class SimulatedViewer:
    """One viewer: hidden utilities, a device, and a time of day that changes per session."""

    def __init__(self, vocabulary: Vocabulary, model: ViewerModel, rng: np.random.Generator) -> None:
        self.model = model
        self.vocabulary = {attr: tuple(values) for attr, values in vocabulary.items()}
        self.utility = {a: rng.normal(0.0, 1.0, len(v)) * model.weight(a) for a, v in self.vocabulary.items()}
        ctx_attr = model.context_attribute
        size = len(self.vocabulary.get(ctx_attr, ()))
        self.context_shift = {t: rng.normal(0.0, model.context_sd, size) * model.weight(ctx_attr) for t in TIMES_OF_DAY}
        self.device = DEVICES[int(rng.integers(3))]  # desktop, mobile or tv
        self.times = [TIMES_OF_DAY[int(rng.integers(len(TIMES_OF_DAY)))] for _ in range(64)]

    def context(self, segment: int) -> Context:
        """The context of a segment (a new session, maybe at another time of day, every few segments)."""
        session = segment // self.model.session_segments
        return Context(self.times[session % len(self.times)], self.device)

    def _values(self, attr: str, context: Context) -> npt.NDArray[np.float64]:
        values = self.utility[attr]
        if attr == self.model.context_attribute:
            values = values + self.context_shift[context.time_of_day]
        return values

    def scene_utility(self, scene: Mapping[str, str], context: Context) -> float:
        """Utility of a scene in a context, before mood."""
        return self.model.bias + sum(
            float(self._values(a, context)[self.vocabulary[a].index(v)]) for a, v in scene.items()
        )

    def best_scene(self, context: Context) -> dict[str, str]:
        """The oracle's scene: the best value of every attribute (utilities add up)."""
        return {a: vals[int(np.argmax(self._values(a, context)))] for a, vals in self.vocabulary.items()}

    def react(self, utility: float, rng: np.random.Generator) -> list[tuple[FeedbackKind, float | None]]:
        """Feedback events ``(kind, seconds)`` for one segment of a scene with this utility."""
        m = self.model
        u = utility + rng.normal(0.0, m.mood_sd)
        if rng.random() < m.lapse or rng.random() < float(_sigmoid(-m.slope * u)):
            watched = rng.uniform(*m.skip_watch) * DWELL_FULL_SECONDS
            return [("dwell", watched), ("skip", None)]
        events: list[tuple[FeedbackKind, float | None]] = [("dwell", DWELL_FULL_SECONDS)]
        if rng.random() < m.like_max * float(_sigmoid(m.slope * (u - m.like_threshold))):
            events.append(("like", None))
        return events


def expected_reward(
    utility: npt.NDArray[np.float64] | float, model: ViewerModel, nodes: int = 32
) -> npt.NDArray[np.float64]:
    """Expected segment reward for scene utilities, over mood (Gauss-Hermite) and lapse."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # type: ignore[no-untyped-call]  # numpy leaves it untyped
    w = w / w.sum()
    u = np.asarray(utility, dtype=np.float64)[..., None] + model.mood_sd * x
    p_skip = _sigmoid(-model.slope * u)
    p_like = model.like_max * _sigmoid(model.slope * (u - model.like_threshold))
    skip_reward = feedback_reward("dwell", float(np.mean(model.skip_watch)) * DWELL_FULL_SECONDS)
    watch_reward = feedback_reward("dwell", DWELL_FULL_SECONDS) + p_like * feedback_reward("like")
    attentive = ((p_skip * skip_reward + (1 - p_skip) * watch_reward) * w).sum(axis=-1)
    reward: npt.NDArray[np.float64] = model.lapse * skip_reward + (1 - model.lapse) * attentive
    return reward


def simulate_policy(
    policy: Policy, vocabulary: Vocabulary, model: ViewerModel, viewers: int, segments: int, seed: int
) -> dict[str, npt.NDArray[np.float64]]:
    """Run one policy over ``viewers`` fresh viewers for ``segments`` segments each.

    Viewers depend only on ``seed`` (every policy meets the same viewers); returns per viewer and
    segment: realized reward, expected reward of the scene shown and of the oracle's scene.
    """
    realized = np.zeros((viewers, segments))
    shown = np.zeros((viewers, segments))
    oracle = np.zeros((viewers, segments))
    for v in range(viewers):
        viewer = SimulatedViewer(vocabulary, model, np.random.default_rng([seed, v]))
        behaviour = np.random.default_rng([seed, v, 1])
        choice_rng = np.random.default_rng([seed, v, 2])
        state = ProfileState()
        for t in range(segments):
            context = viewer.context(t)
            scene = policy.choose(state, Wishes(), context, choice_rng)
            utility = viewer.scene_utility(scene, context)
            events = viewer.react(utility, behaviour)
            for kind, seconds in events:
                state.apply(kind, seconds, scene, context.bucket)
            realized[v, t] = sum(feedback_reward(kind, seconds) for kind, seconds in events)
            shown[v, t] = utility
            oracle[v, t] = viewer.scene_utility(viewer.best_scene(context), context)
    return {"realized": realized, "expected": expected_reward(shown, model), "oracle": expected_reward(oracle, model)}


def _round(values: npt.NDArray[np.float64] | float, digits: int = 4) -> Any:
    return np.round(values, digits).tolist()


def summarize(runs: dict[str, npt.NDArray[np.float64]]) -> dict[str, Any]:
    """Mean reward, regret and fraction of the oracle's reward, overall and per segment."""
    expected, oracle, realized = runs["expected"], runs["oracle"], runs["realized"]
    fraction = expected / oracle
    regret = oracle - expected
    segments = expected.shape[1]
    at = min(TARGET_SEGMENT, segments) - 1
    return {
        "mean_reward": _round(realized.mean()),
        "mean_expected_reward": _round(expected.mean()),
        "oracle_mean_expected_reward": _round(oracle.mean()),
        "mean_regret_per_segment": _round(regret.mean()),
        "cumulative_regret": _round(regret.sum(axis=1).mean(), 3),
        f"fraction_of_oracle_at_segment_{at + 1}": _round(fraction[:, at].mean()),
        "fraction_of_oracle_overall": _round(fraction.mean()),
        "fraction_of_oracle_last_10": _round(fraction[:, -10:].mean()),
        "per_segment": {
            "reward": _round(realized.mean(axis=0)),
            "expected_reward": _round(expected.mean(axis=0)),
            "oracle_expected_reward": _round(oracle.mean(axis=0)),
            "regret": _round(regret.mean(axis=0)),
            "fraction_of_oracle": _round(fraction.mean(axis=0)),
        },
    }


def run_simulation(
    policies: Sequence[str],
    vocabulary: Vocabulary,
    *,
    viewers: int = 200,
    segments: int = 50,
    seed: int = 0,
    model: ViewerModel | None = None,
) -> dict[str, Any]:
    """Simulate each policy on the same viewers; return the JSON-ready report."""
    model = model or ViewerModel()
    report: dict[str, Any] = {
        "simulation": "viewers",
        "viewers": viewers,
        "segments": segments,
        "seed": seed,
        "vocabulary": {a: list(v) for a, v in vocabulary.items()},
        "viewer_model": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(model).items()},
        "reward": "per segment: watched fraction of the segment + 2 per like (rewards.feedback_reward)",
        "policies": {},
    }
    for name in policies:
        runs = simulate_policy(get_policy(name, vocabulary), vocabulary, model, viewers, segments, seed)
        report["policies"][name] = summarize(runs)
    at = min(TARGET_SEGMENT, segments)
    key = f"fraction_of_oracle_at_segment_{at}"
    report["target"] = {
        "policy": "thompson",
        "fraction_of_oracle": TARGET_FRACTION,
        "by_segment": TARGET_SEGMENT,
        "reached": report["policies"].get("thompson", {}).get(key, 0.0) >= TARGET_FRACTION
        if "thompson" in report["policies"]
        else None,
    }
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """Expected reward per segment (with the oracle's) and cumulative regret, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    oracle = None
    for name, result in report["policies"].items():
        per = result["per_segment"]
        x = np.arange(1, len(per["expected_reward"]) + 1)
        left.plot(x, per["fraction_of_oracle"], label=name)
        right.plot(x, np.cumsum(per["regret"]), label=name)
        oracle = per["oracle_expected_reward"]
    left.axhline(TARGET_FRACTION, color="grey", linestyle="--", linewidth=1, label="80% of oracle")
    left.axvline(TARGET_SEGMENT, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="segment", ylabel="expected reward / oracle's", ylim=(0, 1.02), title="Fraction of oracle reward")
    right.set(xlabel="segment", ylabel="cumulative regret", title="Regret against the oracle")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    if oracle is not None:
        fig.suptitle(
            f"{report['viewers']} simulated viewers, oracle expected reward {float(np.mean(oracle)):.2f} per segment",
            fontsize=10,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast simulate`."""
    parser.add_argument(
        "--policy",
        action="append",
        choices=tuple(POLICIES),
        help="policy to simulate (repeatable; default: all)",
    )
    parser.add_argument("--viewers", type=int, default=200, help="simulated viewers per policy (default 200)")
    parser.add_argument("--segments", type=int, default=50, help="segments per viewer (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of viewers and behaviour (default 0)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")
    parser.add_argument("--plot", type=Path, help="where to write a PNG plot")
    from personalization import ab_simulation  # its flags: --ab, --aa, --srm-drop, ...

    ab_simulation.add_arguments(parser)


def main(args: argparse.Namespace, vocabulary: Vocabulary) -> int:
    """Entry point of `pixelcast simulate` (the caller passes the world's vocabulary)."""
    report = run_simulation(
        args.policy or list(POLICIES), vocabulary, viewers=args.viewers, segments=args.segments, seed=args.seed
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}")
    at = min(TARGET_SEGMENT, args.segments)
    for name, result in report["policies"].items():
        print(
            f"{name:15s} mean reward {result['mean_reward']:.3f}"
            f"  regret/segment {result['mean_regret_per_segment']:.3f}"
            f"  oracle fraction @{at} {result[f'fraction_of_oracle_at_segment_{at}']:.3f}"
        )
    return 0

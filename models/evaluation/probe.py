"""The attribute probe: a small CNN that tells subject, palette and weather from one 128x128 frame.

It is trained only on the world's own renders (random specs, seeds and times), so its accuracy on
held-out renders is the ceiling of any adherence figure, and its predictions on generated frames
measure whether the model shows what was asked for. Training is deterministic per seed and takes
a minute or two on one CPU core; the result is cached (`.pixelcast/probe/`) and may be shipped
(`models/weights/probe/`, well under 1 MB).
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from models.world.render import render_frame
from models.world.spec import ATTRIBUTES, SceneSpec

log = logging.getLogger(__name__)

PROBE_ATTRIBUTES: tuple[str, ...] = ("subject", "palette", "weather")
"""Attributes one frame shows (pace and camera need motion)."""

WEIGHTS_FILE = "probe.safetensors"
CONFIG_FILE = "probe.json"
CACHE_DIR = pathlib.Path(".pixelcast/probe")
"""Default cache of trained probes, relative to the working directory (one sub-folder per mode)."""

MAX_START_FRAME = 24 * 60 * 10
"""Training frames are drawn from the first ten minutes of each scene."""


def shipped_probe_path() -> pathlib.Path:
    """Where a shipped probe lives: `models/weights/probe/`."""
    return pathlib.Path(__file__).resolve().parent.parent / "weights" / "probe"


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe is trained; a cached probe is reused only for the same config and world."""

    seed: int = 0
    steps: int = 1000
    batch: int = 64
    train_scenes: int = 2400  # distinct (spec, seed) pairs rendered for training
    frames_per_scene: int = 4  # random times per scene
    lr: float = 3e-3
    width: int = 16

    @classmethod
    def quick(cls, seed: int = 0) -> ProbeConfig:
        """A short training (tens of seconds) for tests: clearly above chance, below the full probe."""
        return cls(seed=seed, steps=120, batch=32, train_scenes=300)


class ProbeNet(nn.Module):
    """Strided CNN, 128x128 -> 4x4 feature map -> one linear head per attribute."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, w, 2),  # 64
            *block(w, w, 2),  # 32
            *block(w, 2 * w, 2),  # 16
            *block(2 * w, 2 * w, 1),
            *block(2 * w, 4 * w, 2),  # 8
            *block(4 * w, 4 * w, 2),  # 4
        )
        flat = 4 * w * 4 * 4
        self.dropout = nn.Dropout(0.2)
        self.heads = nn.ModuleDict({name: nn.Linear(flat, len(ATTRIBUTES[name])) for name in PROBE_ATTRIBUTES})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for images `[N, 3, 128, 128]` in [0, 1]."""
        h = self.dropout(self.features(x * 2.0 - 1.0).flatten(1))
        return {name: head(h) for name, head in self.heads.items()}


def to_tensor(frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` -> float `[N, 3, 128, 128]` in [0, 1] (resized if needed)."""
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(frames))).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (128, 128):
        x = F.interpolate(x, size=(128, 128), mode="bilinear", antialias=True, align_corners=False)
    return x


class AttributeProbe:
    """A trained `ProbeNet` with its vocabularies: `predict` frames -> attribute values."""

    def __init__(self, net: ProbeNet, config: ProbeConfig, info: dict | None = None) -> None:
        self.net = net.eval()
        self.config = config
        self.info: dict = dict(info or {})
        """Training facts: world fingerprint, held-out accuracy per attribute, seconds."""

    @torch.inference_mode()
    def logits(self, frames: np.ndarray | Sequence[np.ndarray], batch: int = 256) -> dict[str, torch.Tensor]:
        """Logits per attribute for uint8 frames `[N, H, W, 3]`."""
        frames = np.asarray(frames)
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in PROBE_ATTRIBUTES}
        for i in range(0, len(frames), batch):
            out = self.net(to_tensor(frames[i : i + batch]))
            for name in PROBE_ATTRIBUTES:
                parts[name].append(out[name])
        return {name: torch.cat(p) if p else torch.zeros(0, len(ATTRIBUTES[name])) for name, p in parts.items()}

    def predict(self, frames: np.ndarray | Sequence[np.ndarray]) -> dict[str, list[str]]:
        """Most likely value of each attribute for each frame of uint8 `[N, H, W, 3]`."""
        return {
            name: [ATTRIBUTES[name][int(i)] for i in logits.argmax(-1)] for name, logits in self.logits(frames).items()
        }

    def accuracy(self, frames: np.ndarray, specs: Sequence[SceneSpec]) -> dict[str, float]:
        """Fraction of frames whose predicted attribute equals the spec's, per attribute and joint."""
        return accuracy(self.predict(frames), specs)

    def save(self, folder: pathlib.Path) -> None:
        """Write `probe.safetensors` (float16) and `probe.json` into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            k: (v.half() if v.is_floating_point() else v).detach().contiguous()
            for k, v in self.net.state_dict().items()
        }
        save_file(state, str(folder / WEIGHTS_FILE))
        vocabularies = {n: list(ATTRIBUTES[n]) for n in PROBE_ATTRIBUTES}
        meta = {"config": asdict(self.config), "attributes": vocabularies, **self.info}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: pathlib.Path) -> AttributeProbe:
        """Read a probe written by `save`."""
        meta = json.loads((folder / CONFIG_FILE).read_text())
        config = ProbeConfig(**meta["config"])
        for name in PROBE_ATTRIBUTES:
            if list(ATTRIBUTES[name]) != meta["attributes"][name]:
                raise ValueError(f"probe at {folder} was trained on another {name} vocabulary")
        net = ProbeNet(config.width)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
        net.load_state_dict(state)
        info = {k: v for k, v in meta.items() if k not in ("config", "attributes")}
        return cls(net, config, info)


def accuracy(predictions: dict[str, list[str]], specs: Sequence[SceneSpec]) -> dict[str, float]:
    """Per-attribute accuracy of `predictions` against `specs`, plus `subject+palette` (both right)."""
    out: dict[str, float] = {}
    hits = {}
    for name, values in predictions.items():
        hits[name] = np.array([v == getattr(s, name) for v, s in zip(values, specs, strict=True)], bool)
        out[name] = float(hits[name].mean()) if len(specs) else 0.0
    if "subject" in hits and "palette" in hits:
        out["subject+palette"] = float(joint_hits(predictions, specs).mean()) if len(specs) else 0.0
    return out


def joint_hits(predictions: dict[str, list[str]], specs: Sequence[SceneSpec]) -> np.ndarray:
    """Per frame: whether both subject and palette were predicted right (the `subject+palette` score)."""
    pairs = zip(predictions["subject"], predictions["palette"], specs, strict=True)
    return np.array([s == spec.subject and p == spec.palette for s, p, spec in pairs], bool)


def chance() -> dict[str, float]:
    """Accuracy of guessing uniformly, per probe attribute and for `subject+palette`."""
    out = {name: 1.0 / len(ATTRIBUTES[name]) for name in PROBE_ATTRIBUTES}
    out["subject+palette"] = out["subject"] * out["palette"]
    return out


def world_fingerprint() -> str:
    """A short hash of a few rendered frames: changes whenever the renderer's look changes."""
    import hashlib

    digest = hashlib.sha256()
    for key in ("ocean/sunset/rain/calm/static", "city/night/snow/lively/pan_left", "volcano/neon/fog/calm/zoom_in"):
        digest.update(render_frame(SceneSpec.from_key(key), 7, 100).tobytes())
    return digest.hexdigest()[:16]


def render_examples(
    seed: int, scenes: int, frames_per_scene: int, progress: bool = True
) -> tuple[np.ndarray, list[SceneSpec]]:
    """Real renders of `scenes` random (spec, seed) pairs at `frames_per_scene` random times each."""
    rng = np.random.default_rng([seed, 11])
    frames = np.empty((scenes * frames_per_scene, 128, 128, 3), np.uint8)
    specs: list[SceneSpec] = []
    for i in tqdm(range(scenes), desc="probe: rendering", unit="scene", disable=not progress, leave=False):
        spec = SceneSpec.random(rng)
        scene_seed = int(rng.integers(1 << 30))
        for j in range(frames_per_scene):
            frames[i * frames_per_scene + j] = render_frame(spec, scene_seed, int(rng.integers(MAX_START_FRAME)))
            specs.append(spec)
    return frames, specs


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, down-up sampling and noise on part of the batch, so decoded (softer) frames read the same."""
    n = x.shape[0]
    choice = torch.randint(0, 4, (n,), generator=gen)
    out = x.clone()
    soft = choice == 1
    if soft.any():
        out[soft] = F.avg_pool2d(F.pad(x[soft], (1, 1, 1, 1), mode="replicate"), 3, 1)
    low = choice == 2
    if low.any():
        out[low] = F.interpolate(F.avg_pool2d(x[low], 2), scale_factor=2, mode="bilinear", align_corners=False)
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    noise = torch.randn(out.shape, generator=gen) * (torch.rand(n, 1, 1, 1, generator=gen) * 0.03)
    return (out + noise).clamp(0.0, 1.0)


def train_probe(config: ProbeConfig, progress: bool = True) -> AttributeProbe:
    """Train a probe from scratch on fresh renders; deterministic for a given config."""
    import time

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    frames, specs = render_examples(config.seed, config.train_scenes, config.frames_per_scene, progress)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # uint8, converted per batch
    y = {name: torch.tensor([ATTRIBUTES[name].index(getattr(s, name)) for s in specs]) for name in PROBE_ATTRIBUTES}
    net = ProbeNet(config.width)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    net.train()
    bar = tqdm(range(config.steps), desc="probe: training", unit="step", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(x), (config.batch,), generator=gen)
        logits = net(_augment(x[idx].float() / 255.0, gen))
        loss = sum(F.cross_entropy(logits[n], y[n][idx]) for n in PROBE_ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    probe = AttributeProbe(net, config)
    test_scenes = 300 if config.steps >= 500 else 100
    test_frames, test_specs = render_examples(config.seed + 1_000_003, test_scenes, 2, progress)
    probe.info = {
        "world_fingerprint": world_fingerprint(),
        "heldout_accuracy": {k: round(v, 4) for k, v in probe.accuracy(test_frames, test_specs).items()},
        "heldout_frames": len(test_frames),
        "train_seconds": round(time.perf_counter() - started, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    return probe


def load_if_current(
    folder: pathlib.Path, config: ProbeConfig | None = None, fingerprint: str | None = None
) -> AttributeProbe | None:
    """The probe in `folder` if it exists, matches the world (and `config` if given), else None."""
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        return None
    try:
        probe = AttributeProbe.load(folder)
    except (ValueError, KeyError, RuntimeError, json.JSONDecodeError) as err:
        log.warning("ignoring probe at %s: %s", folder, err)
        return None
    if probe.info.get("world_fingerprint") != (fingerprint or world_fingerprint()):
        log.warning("ignoring probe at %s: trained on a different world renderer", folder)
        return None
    if config is not None and probe.config != config:
        return None
    return probe


def load_or_train_probe(
    path: pathlib.Path | str | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> AttributeProbe:
    """A probe for the current world: from `path`, the shipped folder or the cache, else trained and cached.

    Args:
        path: a probe folder to use; trained into it when missing or stale.
        quick: accept (or train) the short test config when no full probe is available.
        seed: training seed when a probe has to be trained.
        progress: show tqdm bars.
    """
    fingerprint = world_fingerprint()
    wanted = ProbeConfig.quick(seed) if quick else ProbeConfig(seed=seed)
    if path is not None:
        folder = pathlib.Path(path)
        probe = load_if_current(folder, None, fingerprint)
    else:
        # A full probe (shipped or cached) is always good enough; quick mode also takes a cached quick one.
        probe = load_if_current(shipped_probe_path(), None, fingerprint)
        probe = probe or load_if_current(CACHE_DIR / "full", ProbeConfig(seed=seed), fingerprint)
        folder = CACHE_DIR / ("quick" if quick else "full")
        if probe is None and quick:
            probe = load_if_current(folder, wanted, fingerprint)
    if probe is None:
        probe = train_probe(wanted, progress)
        probe.save(folder)
        log.info("trained attribute probe saved to %s: %s", folder, probe.info["heldout_accuracy"])
    return probe


def main(argv: list[str] | None = None) -> int:
    """`python -m models.evaluation.probe [--out DIR] [--quick]`: train a probe, save it, print its ceiling."""
    import argparse

    parser = argparse.ArgumentParser(description="Train the attribute probe on world renders and save it.")
    parser.add_argument("--out", type=pathlib.Path, default=CACHE_DIR / "full", help="e.g. models/weights/probe")
    parser.add_argument("--quick", action="store_true", help="short test training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    probe = load_or_train_probe(args.out, quick=args.quick, seed=args.seed)
    print(f"probe at {args.out}: held-out accuracy on real renders {probe.info['heldout_accuracy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

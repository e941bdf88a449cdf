"""`pixelcast train`: the whole recipe, stage by stage, resumable, ending in a diffusers folder."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel

from models.camera import CameraReader
from models.card import TRAINING_FILE, write_model_card
from models.grounding import SceneGrounder
from models.lexicon import LICENCE_FILE
from models.pipeline import PixelcastPipeline
from models.text import TextEncoder

from .anchor import train_anchor
from .architecture import make_scheduler
from .autoencoder import latent_scale, train_autoencoder
from .camera import train_camera_reader
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .copy_head import train_copy_head
from .decoder import train_decoder
from .denoiser import train_denoiser
from .first_frames import StillBank, build_still_bank, train_first_frames, train_settling
from .grounder import train_grounder
from .lexicon import bundled_wordnet, wordnet_licence
from .own_decoder import OwnLatents, build_own_latents, train_own_decoder
from .pinned import build_pinned_stills, medoid_layouts, train_pinning
from .rollout import train_rollout
from .sharpen import train_sharpener
from .world_data import ClipBank, build_clip_bank, with_canonical_captions

T = TypeVar("T")

LONG_CLIPS_SEED = 12
"""Added to the config's seed for the long clips' draw, so that they are other clips than the bank's."""


def _final(values: list[float], last: int = 100) -> float:
    """A training curve's end: the mean of its `last` values (0 for an empty curve), as the summary reports it."""
    tail = values[-last:]
    return round(sum(tail) / max(1, len(tail)), 5)


def _curve(losses: list[float]) -> dict[str, Any]:
    """A stage's loss curve as the summary reports it: its end, and about 100 points of it."""
    return {"final_loss": _final(losses), "loss_curve": losses[:: max(1, len(losses) // 100)]}


def _cached(path: Path, recipe: dict[str, Any], key: str, kind: Callable[..., T], build: Callable[[], T]) -> T:
    """`kind(**fields)` from the checkpoint at `path` (its fields under `key`) if it was saved under `recipe`;
    else `build()`, saved there."""
    saved = load_checkpoint(path, recipe)
    if saved is not None:
        return kind(**saved[key])
    made = build()
    save_checkpoint(path, {key: made.__dict__}, recipe)
    return made


def _clip_bank(config: TrainConfig, work_dir: Path, vae: Any, scale: float, device: torch.device) -> ClipBank:
    def build() -> ClipBank:
        text = TextEncoder(cache_size=0, device=device)
        clips, frames, captions = config.clips, config.clip_frames, config.captions_per_clip
        return build_clip_bank(config.seed, clips, frames, captions, vae, scale, text)

    return _cached(work_dir / "clip_bank.pt", config.clip_bank_recipe(), "bank", ClipBank, build)


def _still_bank(
    config: TrainConfig, work_dir: Path, bank: ClipBank, vae: Any, scale: float, device: torch.device
) -> StillBank:
    def build() -> StillBank:
        text = TextEncoder(cache_size=0, device=device)
        return build_still_bank(bank, config.first_frames_stills, config.seed, vae, scale, text)

    return _cached(work_dir / "stills.pt", config.still_bank_recipe(), "stills", StillBank, build)


def _pinned_stills(
    config: TrainConfig, work_dir: Path, bank: ClipBank, vae: Any, scale: float, device: torch.device
) -> StillBank:
    def build() -> StillBank:
        text = TextEncoder(cache_size=0, device=device)
        return build_pinned_stills(bank, config.pin_moments, medoid_layouts(), vae, scale, text)

    return _cached(work_dir / "pinned.pt", config.pinned_stills_recipe(), "pinned", StillBank, build)


def _long_clips(config: TrainConfig, work_dir: Path, vae: Any, scale: float, device: torch.device) -> ClipBank:
    """The copy stage's long clips (their own draw of scenes), each with its canonical caption last."""

    def build() -> ClipBank:
        text = TextEncoder(cache_size=0, device=device)
        seed, count, frames = config.seed + LONG_CLIPS_SEED, config.copy_clips, config.copy_clip_frames
        clips = build_clip_bank(seed, count, frames, config.captions_per_clip, vae, scale, text)
        return with_canonical_captions(clips, text)

    return _cached(work_dir / "long_clips.pt", config.long_clips_recipe(), "clips", ClipBank, build)


@dataclass
class Trained:
    """A pipeline's parts as the stages leave them, the summary's sections so far, and the training data
    already in memory (`None` where the stages did not need it)."""

    vae: AutoencoderTiny
    unet: UNet2DConditionModel
    scheduler: DDIMScheduler
    grounder: SceneGrounder | None
    sections: dict[str, Any]
    bank: ClipBank | None = None
    pinned: StillBank | None = None
    camera: CameraReader | None = None


def _stages_to_pinning(config: TrainConfig, work_dir: Path, device: torch.device) -> Trained:
    """Stages 1 to 6d (resuming from `work_dir`): the autoencoder, the denoiser and its fine-tunes."""
    started = time.monotonic()
    # 1. autoencoder
    vae, ae_figures = train_autoencoder(config, work_dir, device)
    scale = latent_scale(vae, config.seed)
    vae.register_to_config(scaling_factor=scale)
    ae_seconds = time.monotonic() - started
    # 1b. the decoder learns to draw edges (the encoder, and so every latent below, stays as it is)
    decoder_figures: dict[str, float] = {}
    if config.decoder_steps:
        vae, decoder_figures = train_decoder(config, vae, work_dir, device)
    # 2. clip bank: render, encode and caption once
    bank = _clip_bank(config, work_dir, vae, scale, device)
    # 3. denoiser
    scheduler = make_scheduler()
    unet, losses = train_denoiser(config, bank, scheduler, work_dir, device)
    # 4. adversarial sharpening of one-step frames
    sharpening: list[dict[str, float]] = []
    if config.sharpen_steps:
        unet, sharpening = train_sharpener(config, bank, scheduler, unet, work_dir, device)
    # 5. rollout fine-tuning: trust a clean previous frame, sample in 1-4 steps, come back from own frames
    rollout_losses: list[float] = []
    if config.rollout_steps:
        unet, rollout_losses = train_rollout(config, bank, scheduler, unet, work_dir, device)
    # 6. first frames: text alone draws the scene, and streams keep it
    first_frame_losses: list[float] = []
    if config.first_frames_steps:
        stills = _still_bank(config, work_dir, bank, vae, scale, device)
        unet, first_frame_losses = train_first_frames(config, bank, stills, scheduler, unet, work_dir, device)
    # 6b. settling: after its own first frames a stream aims at one of the scene's pictures, not their average
    settle_losses: list[float] = []
    if config.first_frames_steps and config.settle_steps:
        unet, settle_losses = train_settling(config, bank, stills, scheduler, unet, work_dir, device)
    # 6c. one picture per scene: first frames aim at one layout of their subject, which a stream keeps
    pin_losses: list[float] = []
    pinned: StillBank | None = None
    if config.first_frames_steps and config.pin_steps:
        pinned = _pinned_stills(config, work_dir, bank, vae, scale, device)
        unet, pin_losses = train_pinning(config, bank, pinned, scheduler, unet, work_dir, device)
    # 6d. the decoder learns to draw the latents streams hold as pictures of their scene, not as a haze
    own_decoder_figures: dict[str, float] = {}
    if config.first_frames_steps and config.own_decoder_steps:
        own = _cached(
            work_dir / "own_latents.pt",
            config.own_decoder_recipe(),
            "own",
            OwnLatents,
            lambda: build_own_latents(config, bank, stills, unet, vae, scheduler, device),
        )
        vae, own_decoder_figures = train_own_decoder(config, own, vae, work_dir, device)
    sections = {
        "autoencoder": {**ae_figures, "latent_scale": round(scale, 5), "minutes": round(ae_seconds / 60, 1)},
        "decoder": decoder_figures,
        "own_decoder": own_decoder_figures,
        "denoiser": _curve(losses),
        "sharpen": {name: _final([r[name] for r in sharpening]) for name in ("mse", "adversarial", "critic", "anchor")},
        "rollout": _curve(rollout_losses),
        "first_frames": _curve(first_frame_losses),
        "settle": _curve(settle_losses),
        "pin": _curve(pin_losses),
    }
    return Trained(vae, unet, scheduler, None, sections, bank, pinned)


BASE_SECTIONS = (
    "autoencoder",
    "decoder",
    "own_decoder",
    "denoiser",
    "sharpen",
    "rollout",
    "first_frames",
    "settle",
    "pin",
    "grounder",
)
"""The summary sections a run started from a trained folder (`--base`) takes over from that folder's."""


def _from_base(config: TrainConfig, base: Path, device: torch.device) -> Trained:
    """Stages 1 to 7, or 1 to 6e where its UNet takes an anchor, as a trained folder holds them (its
    `training.json` must be of this recipe).

    Raises:
        ValueError: the folder's recipe differs from `config` in the stages it holds, or its UNet already
            has a copy head.
    """
    summary = json.loads((base / TRAINING_FILE).read_text())
    pipeline = PixelcastPipeline.from_pretrained(base, local_files_only=True, dtype=torch.float32).to(device)
    differing = _recipe_differences(config, summary["config"], anchored=pipeline.takes_anchor)
    if differing:
        raise ValueError(f"{base} was trained under another recipe ({', '.join(differing)} differ)")
    if pipeline.copy_head:
        raise ValueError(f"{base}: its denoiser already has a copy head; start from a folder trained to stage 6e")
    kept = (*BASE_SECTIONS, "anchor") if pipeline.takes_anchor else BASE_SECTIONS
    if pipeline.camera is not None:
        kept = (*kept, "camera")
    sections = {name: summary[name] for name in kept if name in summary}
    return Trained(pipeline.vae, pipeline.unet, pipeline.scheduler, pipeline.grounder, sections, camera=pipeline.camera)


def _recipe_differences(config: TrainConfig, base_config: dict[str, Any], *, anchored: bool = False) -> list[str]:
    """The fields on which the stages a trained folder holds (denoiser, decoder and grounder, and the anchor
    where `anchored`) depend and that differ between `config` and its `base_config`; settings for streams
    and bookkeeping may differ. Fields this recipe has and the folder's lacks (later stages) take defaults."""
    unknown = set(base_config) - {field.name for field in fields(TrainConfig)}
    if unknown:
        return sorted(unknown)
    theirs = TrainConfig(**base_config)
    differing: set[str] = set()
    recipes = ("own_decoder_recipe", "grounder_recipe", *(("anchor_recipe",) if anchored else ()))
    for recipe in recipes:
        ours, other = getattr(config, recipe)(), getattr(theirs, recipe)()
        differing |= {name for name in ours.keys() | other.keys() if ours.get(name) != other.get(name)}
    return sorted(differing)


def train(
    config: TrainConfig,
    out_dir: Path,
    work_dir: Path,
    threads: int | None = None,
    device: torch.device | str = "cpu",
    base: Path | None = None,
) -> dict[str, Any]:
    """Run every stage on `device` (resuming from `work_dir`) and save the pipeline to `out_dir`; returns a summary.

    With `base`, a folder this recipe trained to stage 6d or 6e, its weights stand for the stages it holds and
    the grounder, and only the later stages run. The data are the same on every device; a GPU changes the
    arithmetic's rounding, not the recipe.
    """
    device = torch.device(device)
    # Fewer threads than cores when the machine is shared: oversubscribed OpenMP threads spin and crawl.
    torch.set_num_threads(threads or os.cpu_count() or 1)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    trained = _stages_to_pinning(config, work_dir, device) if base is None else _from_base(config, base, device)
    vae, unet, scheduler = trained.vae, trained.unet, trained.scheduler
    scale = float(vae.config.scaling_factor)
    anchoring = bool(config.first_frames_steps and config.pin_steps and config.anchor_steps)
    bank, pinned = trained.bank, trained.pinned
    if anchoring and ("anchor" not in trained.sections or config.copy_steps):
        bank = bank or _clip_bank(config, work_dir, vae, scale, device)
        pinned = pinned or _pinned_stills(config, work_dir, bank, vae, scale, device)
    # 6e. the anchor: a stream's continuation can come back to the picture it started from
    anchor_section = trained.sections.get("anchor") or _curve([])
    anchor_trained = bool(anchoring and bank and pinned and "anchor" not in trained.sections)
    if anchor_trained:
        unet, anchor_losses = train_anchor(config, bank, pinned, scheduler, unet, work_dir, device)
        anchor_section = _curve(anchor_losses)
    # 6f. the copy head: a continuation keeps, cell by cell, its anchor or its moved previous frame
    copy_losses: list[float] = []
    if anchoring and bank and pinned and config.copy_steps:
        long_clips = _long_clips(config, work_dir, vae, scale, device)
        unet, copy_losses = train_copy_head(config, long_clips, bank, pinned, scheduler, unet, work_dir, device)
    # 7. the prompt grounder (text only)
    grounder, grounding = trained.grounder, trained.sections.get("grounder", {})
    if grounder is None:
        text = TextEncoder(cache_size=0, device="cpu")
        grounder, grounding = train_grounder(config, text.sentence_embeddings, work_dir)
    # 7b. the camera reader: a continuation is drawn from its anchor moved by the camera the prompt names
    camera, camera_figures = trained.camera, trained.sections.get("camera", {})
    if camera is None and int(unet.config.in_channels) == 3 * int(vae.config.latent_channels):
        camera, camera_figures = train_camera_reader(config, grounder, vae, scale, work_dir)
    # 8. save in diffusers layout; float16 on disk keeps all weights well under 25 MB
    pipeline = PixelcastPipeline(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        grounder=grounder,
        camera=camera,
        context_noise=config.stream_context_noise if config.rollout_steps else config.context_noise_inference,
        noise_drift=config.noise_drift_inference,
        new_prompt_steps=config.new_prompt_steps_inference,
    )
    # replace the pipeline, keep anything else (the probe)
    for part in ("unet", "vae", "scheduler", "grounder", "camera"):
        shutil.rmtree(out_dir / part, ignore_errors=True)
    pipeline.to("cpu").to(torch.float16).save_pretrained(out_dir)
    (out_dir / "grounder" / LICENCE_FILE).write_text(wordnet_licence(bundled_wordnet()))
    summary = {
        "config": config.to_dict(),
        "device": str(device),
        **trained.sections,
        "anchor": anchor_section,
        "copy_head": _curve(copy_losses),
        "grounder": grounding,
        "camera": camera_figures,
        "minutes_this_run": round((time.monotonic() - started) / 60, 1),
        "parameters": {
            "unet": sum(p.numel() for p in unet.parameters()),
            "autoencoder": sum(p.numel() for p in vae.parameters()),
            "grounder": sum(p.numel() for p in grounder.parameters()),
            "camera": sum(p.numel() for p in camera.parameters()) if camera is not None else 0,
        },
        "size_mb": round(
            sum(
                f.stat().st_size
                for part in ("unet", "vae", "grounder", "camera")
                for f in (out_dir / part).rglob("*")
                if f.is_file()
            )
            / 2**20,
            2,
        ),
    }
    if base is not None:
        held = "every stage before the copy head" if "anchor" in trained.sections else "every stage before the anchor"
        trained_here = [
            *(["the anchor"] if anchor_trained else []),
            *(["the copy head"] if copy_losses else []),
            *(["the camera reader"] if trained.camera is None and camera is not None else []),
        ]
        summary["base"] = (
            f"{held}, and the grounder, are the weights of a folder this recipe trained (its training.json's"
            f" figures are kept); this run trained {' and '.join(trained_here) or 'nothing more'} on them"
        )
    (out_dir / TRAINING_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    write_model_card(out_dir)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast train`."""
    from models import default_model_path

    parser.add_argument("--out", type=Path, default=default_model_path(), help="pipeline folder to write")
    parser.add_argument("--work-dir", type=Path, default=Path(".pixelcast/train"), help="checkpoints (resume)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run of the same recipe (smoke test)")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in --work-dir")
    parser.add_argument(
        "--base",
        type=Path,
        help=(
            "a folder this recipe trained to stage 6d (or 6e): take its weights for the stages it holds and the"
            " grounder, and train the later stages (the anchor, the copy head) on them"
        ),
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores; fewer on a busy machine)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on, e.g. cuda (default cpu, which made the shipped weights)",
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast train`."""
    config = TrainConfig(seed=args.seed)
    if args.quick:
        config = config.quick()
    if args.fresh and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    summary = train(config, args.out, args.work_dir, args.threads, args.device, args.base)
    print(json.dumps({k: v for k, v in summary.items() if k != "denoiser"}, indent=2))
    print(f"saved the pipeline to {args.out} ({summary['size_mb']} MB) in {summary['minutes_this_run']} min")
    return 0

"""`StreamingEngine`: batched, precomputed autoregressive frame generation for many streams.

One engine serves every stream. Each call to `generate` takes any number of (state, conditioning)
requests, possibly with different prompts, and runs one batched UNet call per denoising step and
one batched VAE decode. The sampler is DDIM (eta = 0) with the noise schedule (betas, prediction
type) taken from the pipeline's scheduler config and precomputed for 1-4 steps, so nothing is set
up per frame. Timesteps always use trailing spacing, whatever the folder's `timestep_spacing` says:
few-step sampling must start at the last training timestep (leading spacing would sample a single
step at t = 0, i.e. from pure noise as if it were a clean image).

The engine runs two kinds of model folders (see `models.loading`):

- the shipped `PixelcastPipeline`: the UNet also sees the previous frame's latent (autoregressive
  video) and, where it takes one, the stream's anchor (`StreamState.anchor`); with a camera reader
  (`models.camera`) a continuation sees, in both slots, its anchor moved by the camera its prompt names;
  with a copy head (`models.copying`) a continuation frame keeps, cell by cell, what it may from the anchor and the
  moved previous frame; text comes from MiniLM (`models.text.TextEncoder`);
- any diffusers text-to-image folder (Stable Diffusion, SD-turbo, ...): the UNet sees text only,
  which comes from the pipeline's own tokenizer and text encoder.

Prompts become conditionings in `models.prompts` (grounded, encoded, cached); how fast the engine
runs, and in which precision per batch size, is `models.tuning`'s business.

In both, each stream's starting noise drifts slowly from frame to frame (`noise_drift`) instead of
being drawn fresh: fresh noise would re-roll every frame's fine detail (flicker), and for a
text-to-image model it is the only thing that keeps consecutive frames alike.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from diffusers import DDIMScheduler

from models.camera import move
from models.copying import has_copy_head, mix
from models.loading import (
    PIXELCAST,
    TEXT_TO_IMAGE,
    PipelinePromptEncoder,
    PromptEncoder,
    load_pipeline,
    vae_scale_factor,
)
from models.pipeline import LATENT_CLAMP, PixelcastPipeline, latents_to_uint8
from models.prediction import PREDICTION_TYPES, clean_and_noise, noise_of
from models.prompts import PromptConditioner
from models.text import TextEncoder, sentence_embedding
from models.tuning.frozen import FrozenDecoder, FrozenUNet
from models.tuning.precision import MixedPrecision

MAX_STEPS = 4


@dataclass
class StreamState:
    """Per-stream sampling state.

    Args:
        generator: source of this stream's noise; the stream's frames depend only on it, the
            conditioning and the previous latent, never on what else is in the batch.
        latent: the previous frame's clean latent `[4, h, w]`, or `None` before the first frame.
        noise: the starting noise of the previous frame, which drifts a little each frame; `None`
            before the first frame.
        conditioning: what the previous frame was made for, `None` before the first frame.
        steps: this stream's own denoising steps per frame (1-4), or `None` for the engine's `steps`.
        anchor: for a model that takes one, the picture the stream keeps coming back to `[4, h, w]`: its
            first frame under its current prompt, or the frame it was started from (a `latent` set
            before its first frame); `None` until then.
        anchor_frames: frames made since the anchor was taken (how far a camera has moved it since).
    """

    generator: torch.Generator
    latent: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    conditioning: torch.Tensor | None = None
    steps: int | None = None
    anchor: torch.Tensor | None = None
    anchor_frames: int = 0

    def anchor_for(self, conditioning: torch.Tensor) -> torch.Tensor | None:
        """The anchor of the next frame, made for `conditioning`: `None` for a first frame and for the first
        after a new prompt (each becomes the anchor of the frames after it), else the stream's anchor, or
        the frame it was started from."""
        if self.latent is None or (self.conditioning is not None and not self.follows(conditioning)):
            return None
        return self.latent if self.anchor is None else self.anchor

    def follows(self, conditioning: torch.Tensor) -> bool:
        """Whether the next frame, made for `conditioning`, goes on from a previous frame made for the same."""
        return (
            self.latent is not None
            and self.conditioning is not None
            and (self.conditioning is conditioning or torch.equal(self.conditioning, conditioning))
        )


class _CopySources(NamedTuple):
    """What a copy head mixes into a batch's frames (`models.copying.mix`)."""

    previous: torch.Tensor  # previous frames' clean latents [B, C, h, w]
    anchor: torch.Tensor  # anchors [B, C, h, w], zeros where there is none
    anchored: torch.Tensor  # [B] bool: the rows that go on under an anchor


@dataclass(frozen=True)
class _Schedule:
    """Precomputed DDIM coefficients for one step count."""

    timesteps: tuple[torch.Tensor, ...]  # scalar timestep per step
    sqrt_alpha: tuple[float, ...]  # sqrt(alpha_bar_t)
    sqrt_one_minus_alpha: tuple[float, ...]  # sqrt(1 - alpha_bar_t)
    sqrt_alpha_prev: tuple[float, ...]  # sqrt(alpha_bar_prev)
    sqrt_one_minus_alpha_prev: tuple[float, ...]  # sqrt(1 - alpha_bar_prev)


def _ddim_schedule(config: dict, steps: int, device: torch.device) -> _Schedule:
    """DDIM coefficients for `steps` steps from any diffusers scheduler config.

    Betas, their rescaling and `set_alpha_to_one` come from `config` (a DDIM, Euler, PNDM, ...
    config); timesteps are always trailing (`T - 1, T - 1 - T / steps, ...`) regardless of the
    config's `timestep_spacing`, so 1-step sampling starts from t = T - 1.
    """
    scheduler = DDIMScheduler.from_config({**dict(config), "timestep_spacing": "trailing"})
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod.double()
    final = float(scheduler.final_alpha_cumprod)
    stride = scheduler.config.num_train_timesteps // steps
    ts, a, b, c, d = [], [], [], [], []
    for t in scheduler.timesteps.tolist():
        prev = t - stride
        alpha = float(alphas[t])
        alpha_prev = float(alphas[prev]) if prev >= 0 else final
        ts.append(torch.tensor(t, dtype=torch.long, device=device))
        a.append(math.sqrt(alpha))
        b.append(math.sqrt(1.0 - alpha))
        c.append(math.sqrt(alpha_prev))
        d.append(math.sqrt(1.0 - alpha_prev))
    return _Schedule(tuple(ts), tuple(a), tuple(b), tuple(c), tuple(d))


def default_model_path() -> pathlib.Path:
    """The shipped model folder, `models/weights/` next to this package."""
    return pathlib.Path(__file__).resolve().parent / "weights"


def slerp_conditioning(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per token between two conditionings `[..., tokens, dim]`.

    Directions move along the great circle, norms interpolate linearly; tokens that are zero
    (padding) or nearly parallel fall back to linear interpolation. `t = 0` gives `a`, `t = 1` gives `b`.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot slerp conditionings of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = a / norm_a.clamp(min=1e-8)
    unit_b = b / norm_b.clamp(min=1e-8)
    cos = (unit_a * unit_b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    spherical = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / sin.clamp(min=1e-8)
    spherical = spherical * ((1 - t) * norm_a + t * norm_b)
    linear = (1 - t) * a + t * b
    degenerate = (sin < 1e-4) | (norm_a < 1e-8) | (norm_b < 1e-8)
    return torch.where(degenerate, linear, spherical)


class StreamingEngine:
    """Generates the next frame of many streams at once from a `PixelcastPipeline` or a text-to-image pipeline.

    Args:
        pipeline: loaded pipeline (its `unet`, `vae` and scheduler config are used; for a
            text-to-image pipeline also its `tokenizer` and `text_encoder`).
        text_encoder: encoder for `encode_prompt` (anything with `encode(texts) -> [B, tokens, dim]`);
            if `None`, a `TextEncoder` (MiniLM) for a `PixelcastPipeline`, else a
            `PipelinePromptEncoder` over the pipeline's own tokenizer and text encoder, created lazily.
        steps: denoising steps per frame, 1-4.
        noise_drift: how far each stream's starting noise moves per frame, as a fraction of a
            quarter turn (0 = frozen noise, 1 = fresh noise every frame); default: the shipped
            pipeline's `noise_drift` config (1 for folders without one), 0.05 for text-to-image.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        text_encoder: PromptEncoder | None = None,
        steps: int = 1,
        noise_drift: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.kind = PIXELCAST if isinstance(pipeline, PixelcastPipeline) else TEXT_TO_IMAGE
        self.unet = pipeline.unet.eval()
        # channels_last roughly halves the full-resolution decoder convolutions on CPU.
        self.vae = pipeline.vae.eval().to(memory_format=torch.channels_last)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        # Which variant (float32, bfloat16, frozen graphs) runs each batch size; `models.tuning` chooses.
        self.unet_precision = MixedPrecision(self.unet, freeze=FrozenUNet)
        self.decoder_precision = MixedPrecision(self.vae, freeze=FrozenDecoder)
        config = pipeline.scheduler.config
        self.prediction_type: str = config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        self.latent_channels = int(self.vae.config.get("latent_channels", self.unet.config.out_channels))
        # A UNet with a copy head can keep, cell by cell, its anchor or its moved previous frame (models.copying).
        self.copy_head = self.kind == PIXELCAST and has_copy_head(
            int(self.unet.config.out_channels), self.latent_channels
        )
        in_channels = int(self.unet.config.in_channels)
        if self.kind == PIXELCAST and in_channels not in (2 * self.latent_channels, 3 * self.latent_channels):
            raise ValueError(
                f"unet.in_channels={in_channels} must be 2 or 3 x out_channels "
                f"({self.latent_channels}): noisy latent + previous-frame latent (+ anchor latent)"
            )
        # The shipped UNet also sees the frame its stream started from, so that it can come back to it.
        self.takes_anchor: bool = self.kind == PIXELCAST and pipeline.takes_anchor
        # With a camera reader a continuation is drawn from its anchor moved by the camera, not from its
        # previous frame, so a one-step UNet's losses do not compound frame after frame (models.camera).
        self.camera = getattr(pipeline, "camera", None) if self.takes_anchor else None
        if self.kind == TEXT_TO_IMAGE and in_channels != self.latent_channels:
            raise ValueError(
                f"unet.in_channels={in_channels} must equal out_channels ({self.latent_channels}) "
                f"for a text-to-image pipeline ({type(pipeline).__name__})"
            )
        if self.kind == TEXT_TO_IMAGE:
            for key in ("class_embed_type", "addition_embed_type"):
                if self.unet.config.get(key) is not None:
                    raise ValueError(f"unet needs extra conditioning ({key}={self.unet.config[key]!r}), not supported")
        sample_size = self.unet.config.sample_size
        if isinstance(sample_size, (list, tuple)):
            self.latent_height, self.latent_width = (int(v) for v in sample_size)
        else:
            self.latent_height = self.latent_width = int(sample_size)
        self.latent_size = self.latent_height
        scale = pipeline.vae_scale_factor if self.kind == PIXELCAST else vae_scale_factor(self.vae)
        self.height = self.latent_height * scale
        self.width = self.latent_width * scale
        self._vae_scale = float(self.vae.config.scaling_factor)
        self._vae_shift = float(self.vae.config.get("shift_factor") or 0.0)
        self._schedules = {n: _ddim_schedule(config, n, self.device) for n in range(1, MAX_STEPS + 1)}
        self._shape = (self.latent_channels, self.latent_height, self.latent_width)
        self._zeros = torch.zeros(self._shape, device=self.device, dtype=self.dtype)
        # A UNet with a projection class embedding also takes the sentence embedding of the text.
        self.pooled_conditioning = self.kind == PIXELCAST and self.unet.config.class_embed_type == "projection"
        # The model was trained with a little noise on the previous frame so that rollouts do not drift.
        self._context_noise = float(pipeline.config.get("context_noise", 0.0)) if self.kind == PIXELCAST else 0.0
        # Latents are clamped to the range the shipped decoder was trained on; other VAEs get them as is.
        self._latent_clamp: float | None = LATENT_CLAMP if self.kind == PIXELCAST else None
        self._steps = 0
        self.steps = steps
        # A frame that cannot simply go on from its previous frame (a stream's first, or the first ones of a
        # new prompt) is made in a few steps, which pick one of the pictures its text allows, where one step
        # gives their blurred average.
        fresh = int(pipeline.config.get("new_prompt_steps", 0)) if self.kind == PIXELCAST else 0
        self.new_prompt_steps = min(fresh, MAX_STEPS)
        if noise_drift is None:
            noise_drift = float(pipeline.config.get("noise_drift", 1.0)) if self.kind == PIXELCAST else 0.05
        self._noise_drift = 0.0
        self.noise_drift = noise_drift
        # Grounding needs sentence embeddings, which the MiniLM encoder has and other encoders may not.
        grounder = getattr(pipeline, "grounder", None) if self.kind == PIXELCAST else None
        if grounder is not None and text_encoder is not None and not hasattr(text_encoder, "sentence_embeddings"):
            grounder = None
        self.prompts = PromptConditioner(
            (lambda: text_encoder) if text_encoder is not None else self._default_text_encoder,
            grounder,
            device=self.device,
            dtype=self.dtype,
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        steps: int = 1,
        text_encoder: PromptEncoder | None = None,
    ) -> StreamingEngine:
        """Load a diffusers folder with `from_pretrained` (see `models.loading.load_pipeline`).

        The folder is either the shipped model (`PixelcastPipeline`: `model_index.json`, `unet/`,
        `vae/`, `scheduler/`) or any local diffusers text-to-image folder such as Stable Diffusion
        or SD-turbo (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`). Weights stored
        in any dtype are loaded as `dtype` (float32, what CPUs want; float16 suits a GPU). Nothing is downloaded.

        Raises:
            ValueError: the folder is not a text-to-image pipeline the engine can run.
        """
        pipeline, _ = load_pipeline(path, device=device, dtype=dtype)
        return cls(pipeline, text_encoder=text_encoder, steps=steps)

    @property
    def steps(self) -> int:
        """Denoising steps per frame (1-4); changing it takes effect on the next `generate`."""
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if not 1 <= int(value) <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {value}")
        self._steps = int(value)

    @property
    def noise_drift(self) -> float:
        """Per-frame drift of each stream's starting noise, in [0, 1].

        The next frame's noise is `cos(a) * previous + sin(a) * fresh` with `a = drift * pi / 2`,
        i.e. a step of `drift` along the great circle from the previous noise towards fresh noise;
        being variance preserving, it stays standard normal however long the stream runs.
        """
        return self._noise_drift

    @noise_drift.setter
    def noise_drift(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"noise_drift must be between 0 and 1, got {value}")
        self._noise_drift = float(value)

    def _default_text_encoder(self) -> PromptEncoder:
        """MiniLM for the shipped pipeline, the pipeline's own tokenizer and text encoder for other folders."""
        if self.kind == PIXELCAST:
            return TextEncoder(device=self.device)
        return PipelinePromptEncoder(self.pipeline.tokenizer, self.pipeline.text_encoder)

    def grounded_prompt(self, text: str) -> str:
        """The prompt the model is given for `text` (`PromptConditioner.grounded_prompt`)."""
        return self.prompts.grounded_prompt(text)

    def encode_prompt(self, text: str) -> torch.Tensor:
        """Conditioning `[tokens, dim]` for one text, grounded first if on (`PromptConditioner.encode`)."""
        return self.prompts.encode(text)

    def blank_conditioning(self) -> torch.Tensor:
        """An all-zero conditioning of the shape `encode_prompt` gives, for throwaway frames."""
        tokens = 32 if self.kind == PIXELCAST else int(getattr(self.prompts.text_encoder, "max_tokens", 77))
        dim = int(self.unet.config.cross_attention_dim)
        return torch.zeros(tokens, dim, device=self.device, dtype=self.dtype)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """One frame's latent: channels, height, width."""
        return self._shape

    def new_stream(self, seed: int) -> StreamState:
        """A fresh stream whose noise is drawn from `torch.Generator().manual_seed(seed)`."""
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        return StreamState(generator=generator)

    def _draw(self, state: StreamState) -> torch.Tensor:
        return torch.randn(self._shape, generator=state.generator, device=self.device, dtype=self.dtype)

    def _drifted_noise(self, state: StreamState) -> torch.Tensor:
        """This frame's starting noise of a stream (updates `state.noise`)."""
        fresh = self._draw(state)
        if state.noise is None or self._noise_drift >= 1.0:
            noise = fresh
        else:
            angle = self._noise_drift * math.pi / 2
            noise = math.cos(angle) * state.noise.to(fresh) + math.sin(angle) * fresh
        state.noise = noise
        return noise

    def generate(self, requests: Sequence[tuple[StreamState, torch.Tensor]]) -> list[np.ndarray]:
        """Next frame of each stream: `H x W x 3` uint8 RGB, in request order.

        Each request is `(state, conditioning [tokens, dim])`. All requests share one UNet call per
        step and one VAE decode; each state's `latent` is updated to the new frame's latent.
        """
        if not requests:
            return []
        return self.decode(self.advance(requests))

    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        """`H x W x 3` uint8 RGB frames of latents `[B, 4, h, w]` from `advance`, in batch order.

        Touches no stream state, so it may run on another thread while `advance` makes the next batch.
        """
        with torch.inference_mode():
            vae, dtype = self.decoder_precision.module_for(latents.shape[0])
            scaled = (latents / self._vae_scale + self._vae_shift).to(dtype)
            decoded = vae.decode(scaled.contiguous(memory_format=torch.channels_last)).sample
            return list(latents_to_uint8(decoded.to(self.dtype)))

    def advance(self, requests: Sequence[tuple[StreamState, torch.Tensor]]) -> torch.Tensor:
        """Next latent of each stream without decoding it (`[B, 4, h, w]`); states move on as in `generate`.

        For frames nobody looks at, such as the middle of a long evaluation rollout. A call that raises
        leaves every state as it was (noise source included), so its streams can be tried again alone.
        """
        if not requests:
            return torch.empty(0, *self._shape, device=self.device, dtype=self.dtype)
        saved = [
            (s.generator.get_state(), s.latent, s.noise, s.conditioning, s.anchor, s.anchor_frames) for s, _ in requests
        ]
        try:
            counts = [self._steps_for(state, cond) for state, cond in requests]
            if len(set(counts)) > 1:
                return self._advance_by_step_count(requests, counts)
            return self._advance_all(requests, self._schedules[counts[0]])
        except BaseException:
            for (state, _), (generator, latent, noise, conditioning, anchor, frames) in zip(requests, saved):
                state.generator.set_state(generator)
                state.latent, state.noise, state.conditioning, state.anchor = latent, noise, conditioning, anchor
                state.anchor_frames = frames
            raise

    def _steps_for(self, state: StreamState, cond: torch.Tensor) -> int:
        """Denoising steps of a stream's next frame: its own or the engine's, or `new_prompt_steps` where that
        frame cannot simply go on from the previous one."""
        steps = self._steps if state.steps is None else state.steps
        if self.new_prompt_steps > steps and not state.follows(cond):
            return self.new_prompt_steps
        return steps

    def _advance_by_step_count(
        self, requests: Sequence[tuple[StreamState, torch.Tensor]], counts: list[int]
    ) -> torch.Tensor:
        """`advance` in one batch per step count (a batch shares its timesteps), in request order."""
        made: dict[int, torch.Tensor] = {}
        for steps in sorted(set(counts)):
            group = [i for i, count in enumerate(counts) if count == steps]
            made.update(zip(group, self._advance_all([requests[i] for i in group], self._schedules[steps])))
        return torch.stack([made[i] for i in range(len(requests))])

    def _advance_all(self, requests: Sequence[tuple[StreamState, torch.Tensor]], schedule: _Schedule) -> torch.Tensor:
        """Next latent of each stream, all sampled on `schedule`; states move on."""
        with torch.inference_mode():
            cond = torch.stack([c.to(device=self.device, dtype=self.dtype) for _, c in requests])
            anchors = [s.anchor_for(c) if self.takes_anchor else None for s, c in requests]
            copy_from: _CopySources | None = None
            if self.kind == PIXELCAST:
                clean = torch.stack([self._zeros if s.latent is None else s.latent for s, _ in requests])
                previous = clean
                if self._context_noise:
                    previous = previous + self._context_noise * torch.stack([self._draw(s) for s, _ in requests])
                if self.takes_anchor:
                    given = torch.stack([self._zeros if a is None else a.to(self._zeros) for a in anchors])
                    anchored = torch.tensor([a is not None for a in anchors], device=self.device)
                    if self.camera is not None:
                        given = self._moved_anchors(requests, cond, given)
                        previous = torch.where(anchored.view(-1, 1, 1, 1), given, previous)
                    previous = torch.cat([previous, given], dim=1)
                    if self.copy_head:
                        copy_from = _CopySources(clean, given, anchored)
            else:
                previous = None
            noise = torch.stack([self._drifted_noise(s) for s, _ in requests])
            latents = self._denoise(noise, previous, cond, schedule, copy_from)
        for (state, cond), latent, anchor in zip(requests, latents, anchors):
            state.latent = latent.clone()
            state.conditioning = cond
            if self.takes_anchor:
                state.anchor = state.latent if anchor is None else anchor
                state.anchor_frames = 0 if anchor is None else state.anchor_frames + 1
        return latents

    def _moved_anchors(
        self, requests: Sequence[tuple[StreamState, torch.Tensor]], cond: torch.Tensor, anchors: torch.Tensor
    ) -> torch.Tensor:
        """Each anchor moved by its prompt's camera over the frames since it was taken, this one included (as far
        as the camera travels); rows without an anchor (zeros) stay zeros."""
        assert self.camera is not None
        frames = torch.tensor([s.anchor_frames + 1 for s, _ in requests], device=self.device)
        return move(anchors, *self.camera.travel(self.camera.motion(cond), frames))

    def _denoise(
        self,
        x: torch.Tensor,
        previous: torch.Tensor | None,
        cond: torch.Tensor,
        schedule: _Schedule,
        copy_from: _CopySources | None = None,
    ) -> torch.Tensor:
        """DDIM (eta = 0) from pure noise `x` to clean latents (clamped for the shipped model); `previous` is what
        the shipped UNet sees beside the noisy latent (previous frame, and anchor where it takes one); with
        `copy_from`, each step's clean latent is the copy head's mix of it with the anchor and previous frame."""
        unet, dtype = self.unet_precision.module_for(x.shape[0])
        pooled = sentence_embedding(cond).to(dtype) if self.pooled_conditioning else None
        cond = cond.to(dtype)
        for i in range(len(schedule.timesteps)):
            model_input = x if previous is None else torch.cat([x, previous], dim=1)
            out = unet(
                model_input.to(dtype),
                schedule.timesteps[i],
                encoder_hidden_states=cond,
                class_labels=pooled,
            ).sample.to(self.dtype)
            head = None
            if copy_from is not None:
                out, head = out[:, : self.latent_channels], out[:, self.latent_channels :]
            a, s = schedule.sqrt_alpha[i], schedule.sqrt_one_minus_alpha[i]
            # 1. predicted clean latent and noise
            clean, eps = clean_and_noise(self.prediction_type, x, out, a, s)
            if head is not None and copy_from is not None:
                clean = mix(clean, head, copy_from.previous, copy_from.anchor, copy_from.anchored)
                eps = noise_of(x, clean, a, s)
            # 2. step to the previous timestep (after the last step alpha_bar_prev is the final alpha, 1 when shipped)
            x = schedule.sqrt_alpha_prev[i] * clean + schedule.sqrt_one_minus_alpha_prev[i] * eps
        if self._latent_clamp is None:
            return x
        return x.clamp(-self._latent_clamp, self._latent_clamp)

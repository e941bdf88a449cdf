"""`StreamingEngine`: batched, precomputed autoregressive frame generation for many streams.

One engine serves every stream. Each call to `generate` takes any number of (state, conditioning)
requests, possibly with different prompts, and runs one batched UNet call per denoising step and
one batched VAE decode. The sampler is DDIM (eta = 0) with the schedule taken from the
pipeline's scheduler config and precomputed for 1-4 steps, so nothing is set up per frame.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler

from models.pipeline import LATENT_CLAMP, PixelcastPipeline, latents_to_uint8
from models.text import TextEncoder, sentence_embedding

MAX_STEPS = 4


@dataclass
class StreamState:
    """Per-stream sampling state.

    Args:
        generator: source of this stream's noise; the stream's frames depend only on it, the
            conditioning and the previous latent, never on what else is in the batch.
        latent: the previous frame's clean latent `[4, h, w]`, or `None` before the first frame.
    """

    generator: torch.Generator
    latent: torch.Tensor | None = None


@dataclass(frozen=True)
class _Schedule:
    """Precomputed DDIM coefficients for one step count."""

    timesteps: tuple[torch.Tensor, ...]  # scalar timestep per step
    sqrt_alpha: tuple[float, ...]  # sqrt(alpha_bar_t)
    sqrt_one_minus_alpha: tuple[float, ...]  # sqrt(1 - alpha_bar_t)
    sqrt_alpha_prev: tuple[float, ...]  # sqrt(alpha_bar_prev)
    sqrt_one_minus_alpha_prev: tuple[float, ...]  # sqrt(1 - alpha_bar_prev)


def _ddim_schedule(config: dict, steps: int, device: torch.device) -> _Schedule:
    scheduler = DDIMScheduler.from_config(config)
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
    """Generates the next frame of many streams at once from a `PixelcastPipeline`.

    Args:
        pipeline: loaded pipeline (its `unet`, `vae` and scheduler config are used).
        text_encoder: encoder for `encode_prompt`; a `TextEncoder` is created lazily if `None`.
        steps: denoising steps per frame, 1-4.
    """

    def __init__(self, pipeline: PixelcastPipeline, *, text_encoder: TextEncoder | None = None, steps: int = 2) -> None:
        self.pipeline = pipeline
        self.unet = pipeline.unet.eval()
        # channels_last roughly halves the full-resolution decoder convolutions on CPU.
        self.vae = pipeline.vae.eval().to(memory_format=torch.channels_last)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        config = pipeline.scheduler.config
        self.prediction_type: str = config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        self.latent_channels = int(self.unet.config.out_channels)
        if int(self.unet.config.in_channels) != 2 * self.latent_channels:
            raise ValueError(
                f"unet.in_channels={self.unet.config.in_channels} must be 2 x out_channels "
                f"({self.latent_channels}): noisy latent + previous-frame latent"
            )
        self.latent_size = int(self.unet.config.sample_size)
        self.height = self.width = self.latent_size * pipeline.vae_scale_factor
        self._vae_scale = float(self.vae.config.scaling_factor)
        self._schedules = {n: _ddim_schedule(config, n, self.device) for n in range(1, MAX_STEPS + 1)}
        self._zeros = torch.zeros(self.latent_channels, self.latent_size, self.latent_size, device=self.device, dtype=self.dtype)
        self._text_encoder = text_encoder
        # A UNet with a projection class embedding also takes the sentence embedding of the text.
        self._pooled_conditioning = self.unet.config.class_embed_type == "projection"
        # The model was trained with a little noise on the previous frame so that rollouts do not drift.
        self._context_noise = float(pipeline.config.get("context_noise", 0.0))
        self._steps = 0
        self.steps = steps

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        steps: int = 2,
        text_encoder: TextEncoder | None = None,
    ) -> StreamingEngine:
        """Load a diffusers folder (`model_index.json`, `unet/`, `vae/`, `scheduler/`) with `from_pretrained`."""
        # Weights may be stored in float16 to stay small; compute in float32 on CPU.
        pipeline = PixelcastPipeline.from_pretrained(
            os.fspath(path), local_files_only=True, low_cpu_mem_usage=False, torch_dtype=torch.float32
        )
        pipeline.set_progress_bar_config(disable=True)
        pipeline.to(device)
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
    def text_encoder(self) -> TextEncoder:
        """The text encoder (created on first use)."""
        if self._text_encoder is None:
            self._text_encoder = TextEncoder(device=self.device)
        return self._text_encoder

    def encode_prompt(self, text: str) -> torch.Tensor:
        """Conditioning `[32, 384]` for one text (cached by the text encoder)."""
        return self.text_encoder.encode([text])[0].to(device=self.device, dtype=self.dtype)

    def new_stream(self, seed: int) -> StreamState:
        """A fresh stream whose noise is drawn from `torch.Generator().manual_seed(seed)`."""
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        return StreamState(generator=generator)

    def generate(self, requests: Sequence[tuple[StreamState, torch.Tensor]]) -> list[np.ndarray]:
        """Next frame of each stream: `H x W x 3` uint8 RGB, in request order.

        Each request is `(state, conditioning [tokens, dim])`. All requests share one UNet call per
        step and one VAE decode; each state's `latent` is updated to the new frame's latent.
        """
        if not requests:
            return []
        schedule = self._schedules[self._steps]
        shape = (self.latent_channels, self.latent_size, self.latent_size)
        with torch.inference_mode():
            cond = torch.stack([c.to(device=self.device, dtype=self.dtype) for _, c in requests])
            previous = torch.stack([self._zeros if s.latent is None else s.latent for s, _ in requests])
            if self._context_noise:
                previous = previous + self._context_noise * torch.stack(
                    [torch.randn(shape, generator=s.generator, device=self.device, dtype=self.dtype) for s, _ in requests]
                )
            noise = torch.stack(
                [torch.randn(shape, generator=s.generator, device=self.device, dtype=self.dtype) for s, _ in requests]
            )
            latents = self._denoise(noise, previous, cond, schedule)
            decoded = self.vae.decode((latents / self._vae_scale).contiguous(memory_format=torch.channels_last)).sample
            frames = latents_to_uint8(decoded)
        for (state, _), latent in zip(requests, latents):
            state.latent = latent.clone()
        return list(frames)

    def _denoise(self, x: torch.Tensor, previous: torch.Tensor, cond: torch.Tensor, schedule: _Schedule) -> torch.Tensor:
        """DDIM (eta = 0) from pure noise `x` to clean, clamped latents."""
        pooled = sentence_embedding(cond) if self._pooled_conditioning else None
        for i in range(len(schedule.timesteps)):
            out = self.unet(
                torch.cat([x, previous], dim=1),
                schedule.timesteps[i],
                encoder_hidden_states=cond,
                class_labels=pooled,
            ).sample
            a, s = schedule.sqrt_alpha[i], schedule.sqrt_one_minus_alpha[i]
            # 1. predicted clean latent and noise
            if self.prediction_type == "v_prediction":
                clean = a * x - s * out
                eps = a * out + s * x
            elif self.prediction_type == "epsilon":
                clean = (x - s * out) / max(a, 1e-4)
                eps = out
            else:
                clean = out
                eps = (x - a * clean) / max(s, 1e-4)
            # 2. step to the previous timestep (after the last step alpha_bar_prev is the final alpha, 1 when shipped)
            x = schedule.sqrt_alpha_prev[i] * clean + schedule.sqrt_one_minus_alpha_prev[i] * eps
        return x.clamp(-LATENT_CLAMP, LATENT_CLAMP)

    def warmup(self, batch_sizes: Sequence[int] = (1, 4)) -> None:
        """Run a few throwaway batches so the first real frame does not pay for lazy initialization."""
        cond = torch.zeros(32, int(self.unet.config.cross_attention_dim), device=self.device, dtype=self.dtype)
        for size in batch_sizes:
            states = [self.new_stream(i) for i in range(size)]
            for _ in range(2):
                self.generate([(s, cond) for s in states])

"""`PixelcastPipeline`: the plain diffusers pipeline for one autoregressive video frame.

This is the slow, per-call path (scheduler set-up and Python overhead every call); the streaming
engine in `models.engine` runs the same math batched and precomputed. Benchmarks use this pipeline
as the "naive" baseline on the same weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderTiny, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from models.camera import CameraReader, move
from models.copying import has_copy_head, mix
from models.grounding import SceneGrounder
from models.prediction import clean_and_noise, output_for
from models.text import sentence_embedding

LATENT_CLAMP = 3.0
"""Latents are clamped to [-3, 3] (AutoencoderTiny's `latent_magnitude`) so rollouts cannot blow up."""


@dataclass
class PixelcastPipelineOutput(BaseOutput):
    """Output of `PixelcastPipeline.__call__`.

    Args:
        images: `np.ndarray` of shape `[B, H, W, 3]`, dtype uint8, RGB.
        latents: `torch.Tensor` `[B, 4, h, w]`, the clean latents; feed them back as `previous_latents`.
    """

    images: np.ndarray
    latents: torch.Tensor


def latents_to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1], `[B, 3, H, W]` -> uint8 RGB `[B, H, W, 3]`."""
    pixels = decoded.add(1.0).mul_(127.5).clamp_(0.0, 255.0).round_().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class PixelcastPipeline(DiffusionPipeline):
    """Text-and-previous-frame conditioned frame generator.

    The UNet input is the noisy latent concatenated on channels with the previous frame's clean
    latent and, where the UNet takes one, an anchor latent: the frame the stream started from, or its
    first frame under its prompt (`in_channels = 2 or 3 x latent_channels`); text token states enter
    through cross-attention.

    Args:
        unet: `UNet2DConditionModel` with `in_channels = 8` or `12`, `out_channels = 4`, or `16` with a copy
            head (`models.copying`: continuation frames mix its drawing with the anchor and the moved previous frame).
        vae: `AutoencoderTiny` decoding the latent to RGB.
        scheduler: a diffusers scheduler for few-step sampling (the shipped one is `DDIMScheduler`
            with trailing timestep spacing).
        grounder: optional `SceneGrounder` (`models.grounding`) that adds the world's canonical words
            for the scene a prompt names; the streaming engine applies it to every prompt.
        camera: optional `CameraReader` (`models.camera`) for a UNet that takes an anchor: a continuation frame
            is drawn from its anchor moved by the camera motion its prompt names (in both context slots).
        context_noise: std of the noise put on the previous frame's latent (as in training).
        noise_drift: per-frame drift of a stream's starting noise in `models.engine.StreamingEngine`
            (1 = fresh noise every frame); this per-call pipeline always draws fresh noise.
        new_prompt_steps: denoising steps in `models.engine.StreamingEngine` of a frame that cannot simply go
            on from its previous one: a stream's first, and those whose prompt differs from the previous
            frame's (0: the engine's own step count). Where nothing pins the picture down, one step gives
            the average of every picture the text allows; a few steps pick one of them.
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["grounder", "camera"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderTiny,
        scheduler: SchedulerMixin,
        grounder: SceneGrounder | None = None,
        camera: CameraReader | None = None,
        context_noise: float = 0.0,
        noise_drift: float = 1.0,
        new_prompt_steps: int = 0,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, grounder=grounder, camera=camera)
        # std of the noise added to the previous frame's latent, as in training (keeps rollouts stable)
        self.register_to_config(context_noise=float(context_noise))
        # how far a stream's starting noise moves per frame in the streaming engine (1 = fresh noise);
        # correlated noise keeps a frame's fine detail where the previous frame had it, so less flicker
        self.register_to_config(noise_drift=float(noise_drift))
        self.register_to_config(new_prompt_steps=int(new_prompt_steps))

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Save in diffusers layout, without the decoder setting diffusers would warn about on every load, and
        without the folder each part was loaded from.

        `AutoencoderTiny` records `block_out_channels` in its config but does not take it back: it
        derives it from `decoder_block_out_channels`, so the saved key is only noise on loading. A part
        loaded from a folder records that folder's path (`_name_or_path`), which says nothing of the copy.
        """
        super().save_pretrained(save_directory, **kwargs)
        for part_config in sorted(Path(save_directory).glob("*/config.json")):
            noisy = ("_name_or_path", "block_out_channels") if part_config.parent.name == "vae" else ("_name_or_path",)
            config = json.loads(part_config.read_text())
            if [config.pop(key) for key in noisy if key in config]:
                part_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.vae.config.decoder_block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of one latent frame."""
        return int(self.vae.config.get("latent_channels", self.unet.config.out_channels))

    @property
    def copy_head(self) -> bool:
        """Whether the UNet carries a copy head (`models.copying`): its continuation frames mix its drawing with
        the anchor and the moved previous frame."""
        return self.takes_anchor and has_copy_head(int(self.unet.config.out_channels), self.latent_channels)

    @property
    def takes_anchor(self) -> bool:
        """Whether the UNet also takes an anchor latent (`in_channels = 3 x latent_channels`)."""
        return int(self.unet.config.in_channels) == 3 * self.latent_channels

    @torch.no_grad()
    def __call__(
        self,
        prompt_embeds: torch.Tensor,
        previous_latents: torch.Tensor | None = None,
        anchor_latents: torch.Tensor | None = None,
        frames_since_anchor: int = 0,
        num_inference_steps: int = 2,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> PixelcastPipelineOutput | tuple[np.ndarray, torch.Tensor]:
        """Generate one frame per prompt embedding.

        Args:
            prompt_embeds: text token states `[B, tokens, cross_attention_dim]` (or `[tokens, dim]`).
            previous_latents: the previous frame's latents `[B, 4, h, w]`; `None` (first frame) uses zeros.
            anchor_latents: for a UNet that `takes_anchor`, the frame each stream started from (or its
                first frame under this prompt) `[B, 4, h, w]`; `None` (a first frame, or the first after
                a new prompt) uses zeros. Ignored by a UNet without an anchor input.
            frames_since_anchor: with a `camera` reader, frames made since the anchor (0 for the first frame
                after it): the anchor is moved by the prompt's camera over this frame and those (as far as the
                camera travels), and the UNet sees it in place of the previous frame too.
            num_inference_steps: denoising steps, 1-4 for the shipped model (a first frame, with no
                `previous_latents`, takes at least the pipeline's `new_prompt_steps`).
            generator: torch generator(s) for the initial noise.
            latents: initial noise to use instead of drawing it.
            return_dict: return a `PixelcastPipelineOutput` instead of a tuple.

        Returns:
            `PixelcastPipelineOutput` with uint8 images `[B, H, W, 3]` and the clean latents.
        """
        # 1. check inputs
        if prompt_embeds.ndim == 2:
            prompt_embeds = prompt_embeds.unsqueeze(0)
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != self.unet.config.cross_attention_dim:
            raise ValueError(
                f"prompt_embeds must be [B, tokens, {self.unet.config.cross_attention_dim}],"
                f" got {tuple(prompt_embeds.shape)}"
            )
        device = self._execution_device
        dtype = self.unet.dtype
        batch = prompt_embeds.shape[0]
        size = int(self.unet.config.sample_size)
        shape = (batch, self.latent_channels, size, size)
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
        if previous_latents is None:
            # a first frame, as the streaming engine makes it: in at least `new_prompt_steps` steps
            num_inference_steps = max(num_inference_steps, int(self.config.get("new_prompt_steps", 0)))
            previous_latents = torch.zeros(shape, device=device, dtype=dtype)
        previous_latents = previous_latents.to(device=device, dtype=dtype).reshape(shape)
        if self.camera is not None and self.takes_anchor and anchor_latents is not None:
            frames = torch.full((batch,), frames_since_anchor + 1, device=device)
            travelled = self.camera.travel(self.camera.motion(prompt_embeds), frames)
            anchor_latents = move(anchor_latents.to(device=device, dtype=dtype).reshape(shape), *travelled)
            previous_latents = anchor_latents
        clean_previous = previous_latents
        anchored = torch.full((batch,), anchor_latents is not None, device=device)

        pooled = sentence_embedding(prompt_embeds) if self.unet.config.class_embed_type == "projection" else None
        if self.config.context_noise:
            previous_latents = previous_latents + self.config.context_noise * randn_tensor(
                shape, generator=generator, device=device, dtype=dtype
            )

        context = previous_latents
        if self.takes_anchor:
            if anchor_latents is None:
                anchor_latents = torch.zeros(shape, device=device, dtype=dtype)
            context = torch.cat([context, anchor_latents.to(device=device, dtype=dtype).reshape(shape)], dim=1)

        # 2. prepare timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

        # 3. denoise
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(latents, t)
            model_input = torch.cat([model_input, context], dim=1)
            model_output = self.unet(model_input, t, encoder_hidden_states=prompt_embeds, class_labels=pooled).sample
            if self.copy_head:
                model_output = self._copied(model_output, latents, t, clean_previous, context, anchored)
            latents = self.scheduler.step(model_output, t, latents, generator=generator).prev_sample
        latents = latents.clamp(-LATENT_CLAMP, LATENT_CLAMP)

        # 4. decode
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        images = latents_to_uint8(decoded)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, latents
        return PixelcastPipelineOutput(images=images, latents=latents)

    def _copied(
        self,
        model_output: torch.Tensor,
        latents: torch.Tensor,
        t: torch.Tensor,
        previous: torch.Tensor,
        context: torch.Tensor,
        anchored: torch.Tensor,
    ) -> torch.Tensor:
        """The UNet's output for the scheduler after its copy head's mix, given back as the scheduler's
        `prediction_type` (v-prediction for the shipped model) so that its `step` stays as it is."""
        channels = self.latent_channels
        drawing, head = model_output[:, :channels], model_output[:, channels:]
        alpha = self.scheduler.alphas_cumprod.to(device=latents.device, dtype=latents.dtype)[t]
        a, s = alpha.sqrt(), (1 - alpha).sqrt()
        kind = self.scheduler.config.prediction_type
        clean, _ = clean_and_noise(kind, latents, drawing, a, s)
        clean = mix(clean, head, previous, context[:, channels:], anchored)
        return output_for(kind, latents, clean, a, s)

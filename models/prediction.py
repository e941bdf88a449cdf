"""What a denoiser's output stands for under a scheduler's `prediction_type`: the clean latent and the noise
it implies, and back, so that samplers that change the clean latent (the copy head's mix) hand the
scheduler an output of the kind it expects."""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""The `prediction_type`s the engine and pipeline sample with."""

Scale = float | torch.Tensor
"""sqrt(alpha_bar) or sqrt(1 - alpha_bar): a number (the engine's schedule) or a tensor (the scheduler's)."""


def _at_least(value: Scale, floor: float = 1e-4) -> Scale:
    """`value`, kept off zero so that dividing by it stays finite at the schedule's ends."""
    return value.clamp(min=floor) if isinstance(value, torch.Tensor) else max(value, floor)


def noise_of(noisy: torch.Tensor, clean: torch.Tensor, a: Scale, s: Scale) -> torch.Tensor:
    """The noise that `noisy = a * clean + s * noise` leaves, given the clean latent."""
    return (noisy - a * clean) / _at_least(s)


def clean_and_noise(
    kind: str, noisy: torch.Tensor, output: torch.Tensor, a: Scale, s: Scale
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean latent and the noise a denoiser's `output` of `kind` stands for, at a step whose noisy latent
    is `noisy = a * clean + s * noise`."""
    if kind == "v_prediction":
        return a * noisy - s * output, a * output + s * noisy
    if kind == "epsilon":
        return (noisy - s * output) / _at_least(a), output
    return output, noise_of(noisy, output, a, s)


def output_for(kind: str, noisy: torch.Tensor, clean: torch.Tensor, a: Scale, s: Scale) -> torch.Tensor:
    """The denoiser output of `kind` that stands for `clean` at a step whose noisy latent is `noisy`."""
    if kind == "sample":
        return clean
    noise = noise_of(noisy, clean, a, s)
    return a * noise - s * clean if kind == "v_prediction" else noise

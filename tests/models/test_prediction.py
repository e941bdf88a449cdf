"""The denoiser output conversions the engine and pipeline share (models.prediction)."""

from __future__ import annotations

import math

import pytest
import torch

from models.prediction import PREDICTION_TYPES, clean_and_noise, output_for


def _output(kind: str, clean: torch.Tensor, noise: torch.Tensor, a: float, s: float) -> torch.Tensor:
    """What a perfect denoiser of `kind` puts out, written from each kind's definition."""
    return {"v_prediction": a * noise - s * clean, "epsilon": noise, "sample": clean}[kind]


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("alpha_bar", [0.05, 0.5, 0.97])
def test_output_and_clean_latent_convert_both_ways(kind: str, as_tensor: bool, alpha_bar: float) -> None:
    generator = torch.Generator().manual_seed(3)
    clean = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    noisy = a * clean + s * noise
    output = _output(kind, clean, noise, a, s)
    scales = (torch.tensor(a, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)) if as_tensor else (a, s)

    got_clean, got_noise = clean_and_noise(kind, noisy, output, *scales)

    torch.testing.assert_close(got_clean, clean)
    torch.testing.assert_close(got_noise, noise)
    torch.testing.assert_close(output_for(kind, noisy, clean, *scales), output)


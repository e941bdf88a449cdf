"""The engine's precision per stage and batch size: timed here, or adopted from an earlier timing.

Each stage (the UNet, the decoder) has a `MixedPrecision` on the engine; this module gives each one a
throwaway call at a batch size to time (and trace frozen graphs with), and reads their choices back in
the forms the server saves (`precision_choice`) and reports (`precision_summary`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from models.text import sentence_embedding
from models.tuning.precision import MixedPrecision

if TYPE_CHECKING:
    from models.engine import StreamingEngine

StageCall = Callable[[Any, torch.dtype, int], None]
"""One throwaway call of a stage's module variant, in a dtype, at a batch size."""


def choose_precision(engine: StreamingEngine, batches: Iterable[int]) -> dict[str, list[int]]:
    """Time float32 against bfloat16 (and frozen graphs) for each stage at each of these batch sizes.

    Each stage keeps bfloat16 at the batch sizes where it was clearly faster (`MixedPrecision.choose`);
    until this runs, and at other batch sizes, everything runs in the model's own dtype. Returns
    `precision_summary`.
    """
    batches = sorted(set(batches))
    with torch.inference_mode():
        for precision, call in _stages(engine).values():
            precision.choose(batches, call)
    return precision_summary(engine)


def precision_choice(engine: StreamingEngine) -> dict[str, dict[str, str]]:
    """What `choose_precision` chose, as JSON holds it: {"unet"|"decoder": {batch size: variant}}."""
    return {
        name: {str(batch): variant for batch, variant in sorted(precision.choice.items())}
        for name, (precision, _) in _stages(engine).items()
    }


def adopt_precision(engine: StreamingEngine, choice: dict[str, dict[str, str]]) -> dict[str, list[int]]:
    """Use a `precision_choice` saved on this machine, without timing; frozen graphs are traced now, so
    the first frames do not pay for it. Returns `precision_summary`.

    Raises `ValueError` for a choice this engine cannot use, `TraceMismatch` where a frozen graph does
    not match its eager module.
    """
    stages = _stages(engine)
    if set(choice) != set(stages):
        raise ValueError(f"a precision choice names {sorted(stages)}, got {sorted(choice)}")
    with torch.inference_mode():
        for name, (precision, call) in stages.items():
            precision.adopt({int(batch): variant for batch, variant in choice[name].items()})
            for batch in sorted(precision.choice):
                module, dtype = precision.module_for(batch)
                call(module, dtype, batch)
    return precision_summary(engine)


def precision_summary(engine: StreamingEngine) -> dict[str, list[int]]:
    """Batch sizes at which the UNet and the decoder run in bfloat16, and at which as frozen graphs."""
    return {
        "unet_bfloat16_batches": sorted(engine.unet_precision.fast_batches),
        "unet_frozen_batches": sorted(engine.unet_precision.frozen_batches),
        "decoder_bfloat16_batches": sorted(engine.decoder_precision.fast_batches),
        "decoder_frozen_batches": sorted(engine.decoder_precision.frozen_batches),
    }


def _stages(engine: StreamingEngine) -> dict[str, tuple[MixedPrecision, StageCall]]:
    """Each stage's precision, with a throwaway call of it as the engine makes it."""

    def unet_call(unet: Any, dtype: torch.dtype, batch: int) -> None:
        channels = int(engine.unet.config.in_channels)
        x = torch.randn(batch, channels, *engine.latent_shape[1:], device=engine.device, dtype=dtype)
        cond = engine.blank_conditioning().to(dtype).repeat(batch, 1, 1)  # contiguous, as served
        pooled = sentence_embedding(cond) if engine.pooled_conditioning else None
        timestep = torch.tensor(0, dtype=torch.long, device=engine.device)
        unet(x, timestep, encoder_hidden_states=cond, class_labels=pooled)

    def decoder_call(vae: Any, dtype: torch.dtype, batch: int) -> None:
        latents = torch.zeros(batch, *engine.latent_shape, device=engine.device, dtype=dtype)
        vae.decode(latents.contiguous(memory_format=torch.channels_last))

    return {"unet": (engine.unet_precision, unet_call), "decoder": (engine.decoder_precision, decoder_call)}

"""Build the shipped pipeline's components with random, seeded weights and save them.

    python -m models.build [--out DIR] [--seed N]

The result is a diffusers folder (`model_index.json`, `unet/`, `vae/`, `scheduler/`) that
`PixelcastPipeline.from_pretrained(DIR)` loads. The weights are untrained; a later training run
replaces them with the same architecture.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence

import torch
from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from models.pipeline import PixelcastPipeline

LATENT_CHANNELS = 4
LATENT_SIZE = 16  # 16x16 latent -> 128x128 pixels (AutoencoderTiny upsamples 2x three times)
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size


def make_unet() -> UNet2DConditionModel:
    """Small UNet: noisy latent + previous-frame latent in (8 channels), noise prediction out (4)."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=2 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        # Attention (self and text cross-attention) at 8x8 and 4x4 only: at 16x16 it costs more
        # than all convolutions together on CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        attention_head_dim=8,  # diffusers reads this as the number of heads: 8 heads of 8 channels
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=16,
    )


def make_vae() -> AutoencoderTiny:
    """Tiny autoencoder with few channels at full resolution: 16x16x4 <-> 128x128x3."""
    return AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(16, 16, 16, 16),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=LATENT_CHANNELS,
        latent_magnitude=3,
        latent_shift=0.5,
    )


def make_scheduler() -> DDIMScheduler:
    """DDIM with trailing spacing and zero terminal SNR, v-prediction: well posed at 1-4 steps."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )


# Random-init gains for the cross-attention projections. With default init, attention over the
# token states is near uniform and its output tiny, so the prompt would barely change a frame.
CROSS_ATTN_KEY_GAIN = 3.0
CROSS_ATTN_VALUE_GAIN = 2.0
CROSS_ATTN_OUT_GAIN = 12.0
UNET_OUTPUT_STD = 1.0  # calibrated std of the UNet prediction on random inputs
DECODER_STD = 0.22  # calibrated per-channel std of the decoder's [0, 1] output
DECODER_MEAN_SPREAD = 0.15  # per-channel mean in 0.5 +- this: a colour cast per seed
CALIBRATION_BATCH = 8


@torch.no_grad()
def _calibrate_unet(unet: UNet2DConditionModel, generator: torch.Generator) -> None:
    """Strengthen text conditioning and scale `conv_out` so predictions have unit std."""
    for module in unet.modules():
        if isinstance(module, Attention) and module.is_cross_attention:
            module.to_k.weight.mul_(CROSS_ATTN_KEY_GAIN)
            module.to_v.weight.mul_(CROSS_ATTN_VALUE_GAIN)
            module.to_out[0].weight.mul_(CROSS_ATTN_OUT_GAIN)
    n = CALIBRATION_BATCH
    sample = torch.randn(n, 2 * LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=generator)
    # Token states like MiniLM's: ~0.5 per dimension on the first tokens, zero padding after.
    text = torch.randn(n, 32, TEXT_DIM, generator=generator) * 0.5
    text[:, 8:] = 0
    out = unet(sample, torch.full((n,), 999), encoder_hidden_states=text).sample
    unet.conv_out.weight.mul_(UNET_OUTPUT_STD / out.std())
    unet.conv_out.bias.mul_(UNET_OUTPUT_STD / out.std())


@torch.no_grad()
def _calibrate_decoder(vae: AutoencoderTiny, generator: torch.Generator) -> None:
    """He-initialize the decoder so texture survives its depth, then set the output's colour statistics."""
    convs = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
        if conv.bias is not None:
            conv.bias.zero_()
    last = convs[-1]
    latents = torch.randn(CALIBRATION_BATCH, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=generator)
    unit = (vae.decoder(latents) + 1) / 2  # the decoder's own [0, 1] output
    std = unit.std(dim=(0, 2, 3))
    mean = unit.mean(dim=(0, 2, 3))
    target_mean = 0.5 + DECODER_MEAN_SPREAD * (2 * torch.rand(3, generator=generator) - 1)
    scale = DECODER_STD / std
    last.weight.mul_(scale.view(-1, 1, 1, 1))
    last.bias.copy_(last.bias * scale + target_mean - mean * scale)


def build_random_pipeline(seed: int = 0) -> PixelcastPipeline:
    """The shipped architecture with random weights drawn from `torch.manual_seed(seed)`.

    Initialization is calibrated on random inputs so that untrained output is visible texture
    that depends on the prompt, the noise and the previous frame (see `_calibrate_*`).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = make_unet()
        vae = make_vae()
    generator = torch.Generator().manual_seed(seed)
    _calibrate_unet(unet, generator)
    _calibrate_decoder(vae, generator)
    pipe = PixelcastPipeline(unet=unet.eval(), vae=vae.eval(), scheduler=make_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def default_out_dir() -> pathlib.Path:
    """`models/weights/` next to this package."""
    return pathlib.Path(__file__).resolve().parent / "weights"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: build the random pipeline and save it."""
    parser = argparse.ArgumentParser(prog="python -m models.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=default_out_dir(), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="weight initialization seed")
    args = parser.parse_args(argv)
    pipe = build_random_pipeline(args.seed)
    pipe.save_pretrained(args.out, safe_serialization=True)
    n_unet = sum(p.numel() for p in pipe.unet.parameters())
    n_vae = sum(p.numel() for p in pipe.vae.parameters())
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"saved to {args.out}: unet {n_unet / 1e6:.2f}M params, vae {n_vae / 1e6:.2f}M params, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

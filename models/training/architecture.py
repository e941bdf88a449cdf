"""The shipped model's components, untrained: a tiny autoencoder and a small video UNet."""

from __future__ import annotations

from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel

LATENT_CHANNELS = 4
LATENT_SIZE = 16  # 16x16 latent -> 128x128 pixels (AutoencoderTiny upsamples 2x three times)
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size


def make_autoencoder() -> AutoencoderTiny:
    """128x128x3 <-> 16x16x4, fully convolutional; the decoder keeps few channels at full resolution.

    The decoder's residual blocks stop at 64x64; at 128x128 only the upsampling convolution and the
    output convolution run, which makes decoding about 1.8x faster than a block there (decoding is
    most of a frame's cost at batch 4) while 24 channels per 64x64 cell still place 1-pixel detail.
    """
    return AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(24, 24, 24, 24),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(2, 2, 2, 0),
        latent_channels=LATENT_CHANNELS,
        latent_magnitude=3,
        latent_shift=0.5,
    )


def make_video_unet() -> UNet2DConditionModel:
    """Denoiser on a 16x16x4 latent: noisy latent + previous frame's latent in, v-prediction out.

    Text enters twice: MiniLM token states through cross-attention, and MiniLM's sentence embedding
    (which generalises to new phrasings) through the time embedding as a projection class embedding.
    """
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=2 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=(48, 96, 128),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=TEXT_DIM,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
        norm_num_groups=16,
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

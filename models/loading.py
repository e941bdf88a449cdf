"""One loader for the shipped Pixelcast model and any local diffusers text-to-image folder.

    pipeline, kind = load_pipeline(path)

- `kind == PIXELCAST`: `model_index.json` names `PixelcastPipeline` (the shipped model). Loaded with
  `PixelcastPipeline.from_pretrained`; its UNet also takes the previous frame's latent (and an anchor
  latent) and its text comes from MiniLM (`models.text.TextEncoder`).
- `kind == TEXT_TO_IMAGE`: any other diffusers text-to-image folder with a cross-attention UNet,
  a VAE (`AutoencoderKL` or `AutoencoderTiny`), a tokenizer and a text encoder, such as a
  Stable-Diffusion or SD-turbo folder. Loaded with `DiffusionPipeline.from_pretrained`; text comes
  from the pipeline's own tokenizer and text encoder (`PipelinePromptEncoder`).

Everything is loaded from the local folder only (`local_files_only=True`) and in float32, also
when the weights are stored in float16. A folder that is not a text-to-image pipeline gives a
`ValueError` that names the folder and what is missing, before any weights are read.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from models.copying import has_copy_head
from models.text import CachedTextEncoder

PIXELCAST = "pixelcast"
"""Kind of the shipped model: a `PixelcastPipeline` (previous-frame conditioned UNet, MiniLM text)."""
TEXT_TO_IMAGE = "text-to-image"
"""Kind of any other diffusers text-to-image pipeline (e.g. `StableDiffusionPipeline`)."""

PIXELCAST_CLASS = "PixelcastPipeline"
# Components a streaming engine never uses; not loading them saves memory and start-up time.
_UNUSED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")


class PromptEncoder(Protocol):
    """What the engine needs from a text encoder: text -> conditioning `[B, tokens, dim]`."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


def _read_json(path: pathlib.Path, folder: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder}: cannot read {path.name}: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{folder}: {path.relative_to(folder)} is not a JSON object")
    return data


def _has_component(index: dict[str, Any], name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None


def check_pipeline_folder(path: str | os.PathLike[str]) -> str:
    """The kind (`PIXELCAST` or `TEXT_TO_IMAGE`) of a diffusers folder, checked from its configs only.

    Raises:
        ValueError: naming the folder and what is missing when it is not a text-to-image pipeline
            that the streaming engine can run (no `model_index.json`, no `unet`, a UNet without
            cross-attention, no VAE / tokenizer / text encoder / scheduler, ...).
    """
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected a diffusers pipeline folder with model_index.json)")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{folder}: not a diffusers pipeline folder (model_index.json missing)")
    index = _read_json(index_file, folder)
    class_name = str(index.get("_class_name", "?"))
    kind = PIXELCAST if class_name == PIXELCAST_CLASS else TEXT_TO_IMAGE

    required = ["unet", "vae", "scheduler"] + (["tokenizer", "text_encoder"] if kind == TEXT_TO_IMAGE else [])
    if not _has_component(index, "unet"):
        other = [name for name in ("transformer", "prior", "decoder") if _has_component(index, name)]
        detail = f" (it has {', '.join(other)}; only UNet pipelines are supported)" if other else ""
        raise ValueError(
            f"{folder}: {class_name} is not a UNet text-to-image pipeline: no unet in model_index.json{detail}"
        )
    missing = [name for name in required if not _has_component(index, name)]
    if missing:
        raise ValueError(
            f"{folder}: {class_name} is not a text-to-image pipeline: missing {', '.join(missing)} in model_index.json"
        )
    optional = [name for name in ("grounder", "camera") if kind == PIXELCAST and _has_component(index, name)]
    for name in ("unet", "vae", *optional):
        if not (folder / name / "config.json").is_file():
            raise ValueError(f"{folder}: {name}/config.json missing")

    unet = _read_json(folder / "unet" / "config.json", folder)
    blocks = [*unet.get("down_block_types", ()), *unet.get("up_block_types", ()), str(unet.get("mid_block_type"))]
    if unet.get("cross_attention_dim") is None or not any("CrossAttn" in str(block) for block in blocks):
        raise ValueError(f"{folder}: the unet has no cross-attention, so it cannot be conditioned on text")
    vae = _read_json(folder / "vae" / "config.json", folder)
    latent = int(vae.get("latent_channels", 4))
    in_channels, out_channels = int(unet.get("in_channels", 4)), int(unet.get("out_channels", 4))
    copying = kind == PIXELCAST and in_channels == 3 * latent and has_copy_head(out_channels, latent)
    if out_channels != latent and not copying:
        raise ValueError(f"{folder}: unet out_channels={out_channels} but the vae has {latent} latent channels")
    expected = (2 * latent, 3 * latent) if kind == PIXELCAST else (latent,)
    if in_channels not in expected:
        what = (
            "noisy latent + previous-frame latent (+ anchor latent)"
            if kind == PIXELCAST
            else "a plain text-to-image unet"
        )
        raise ValueError(
            f"{folder}: unet in_channels={in_channels}, expected {' or '.join(map(str, expected))} ({what}); "
            "inpainting, depth or image-conditioned unets are not supported"
        )
    if kind == TEXT_TO_IMAGE:
        for key in ("class_embed_type", "addition_embed_type"):
            if unet.get(key) is not None:
                raise ValueError(
                    f"{folder}: the unet needs extra conditioning ({key}={unet[key]!r}, e.g. SDXL's pooled text "
                    "and time ids), which the streaming engine does not provide"
                )
    return kind


def load_pipeline(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Any, str]:
    """Load a checked diffusers folder with diffusers' own `from_pretrained`, local files only.

    Args:
        path: the pipeline folder (`model_index.json`, `unet/`, `vae/`, `scheduler/`, ...).
        device: where the pipeline is moved.
        dtype: compute dtype; float16 weights are converted on load (float32 is what CPUs want).

    Returns:
        `(pipeline, kind)` with `kind` `PIXELCAST` (a `PixelcastPipeline`) or `TEXT_TO_IMAGE` (the
        folder's own pipeline class, e.g. `StableDiffusionPipeline`).
    """
    folder = os.fspath(path)
    kind = check_pipeline_folder(folder)
    if kind == PIXELCAST:
        from models.pipeline import PixelcastPipeline

        pipeline = PixelcastPipeline.from_pretrained(
            folder, local_files_only=True, low_cpu_mem_usage=False, dtype=dtype
        )
    else:
        from diffusers import DiffusionPipeline

        index = _read_json(pathlib.Path(folder) / "model_index.json", pathlib.Path(folder))
        skip = {name: None for name in _UNUSED_COMPONENTS if _has_component(index, name)}
        if "safety_checker" in skip:
            skip["requires_safety_checker"] = False
        pipeline = DiffusionPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype, **skip)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(device)
    return pipeline, kind


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent cell along each side of `vae` (AutoencoderTiny or AutoencoderKL-like)."""
    config = vae.config
    blocks = config.get("decoder_block_out_channels") or config.get("block_out_channels")
    if not blocks:
        raise ValueError(f"cannot tell the upsampling factor of {type(vae).__name__}")
    return 2 ** (len(blocks) - 1)


class PipelinePromptEncoder(CachedTextEncoder):
    """A text-to-image pipeline's own tokenizer + text encoder -> token states `[B, max_length, dim]`.

    Matches `StableDiffusionPipeline.encode_prompt` without guidance, LoRA scale or clip skip:
    prompts are padded (and truncated) to the tokenizer's `model_max_length` and the text
    encoder's last hidden state is the conditioning. Padded positions are kept as the model saw
    them in training (not zeroed). Results are cached per text (LRU).

    Args:
        tokenizer: the pipeline's tokenizer (e.g. `CLIPTokenizer`).
        text_encoder: the pipeline's text encoder (e.g. `CLIPTextModel`).
        cache_size: number of texts kept in the cache.
    """

    def __init__(self, tokenizer: Any, text_encoder: Any, *, cache_size: int = 512) -> None:
        self.tokenizer = tokenizer
        self.model = text_encoder.eval()
        self.model.requires_grad_(False)
        self.device = text_encoder.device
        self.max_tokens = int(tokenizer.model_max_length)
        if not 0 < self.max_tokens <= 4096:
            raise ValueError(f"tokenizer model_max_length={tokenizer.model_max_length} is not a usable length")
        self.embedding_dim = int(text_encoder.config.hidden_size)
        self._use_attention_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))
        self._init_cache(cache_size)

    def _run(self, texts: list[str]) -> list[torch.Tensor]:
        batch = self.tokenizer(
            texts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device) if self._use_attention_mask else None
        with torch.inference_mode():
            hidden = self.model(ids, attention_mask=mask)[0]
        # Clone out of inference mode so cached tensors can be used anywhere.
        return [h.clone() for h in hidden.unbind(0)]

"""The procedural world: scene specs, a fast numpy renderer, captions and training samples."""

from models.world.captions import attribute_descriptions, caption, caption_parts, describe, heldout_phrases
from models.world.dataset import sample_frames, sample_pairs
from models.world.render import FPS, render_clip, render_frame
from models.world.spec import ATTRIBUTES, CAMERAS, PACES, PALETTES, SUBJECTS, WEATHERS, SceneSpec, all_specs

__all__ = [
    "ATTRIBUTES",
    "CAMERAS",
    "FPS",
    "PACES",
    "PALETTES",
    "SUBJECTS",
    "WEATHERS",
    "SceneSpec",
    "all_specs",
    "attribute_descriptions",
    "caption",
    "caption_parts",
    "describe",
    "heldout_phrases",
    "render_clip",
    "render_frame",
    "sample_frames",
    "sample_pairs",
]

"""Viewer text -> what the denoiser reads: the prompt grounded in the world's words, then encoded; both cached.

A shipped pipeline with a `grounder` (`models.grounding`) has every prompt grounded before encoding: the
world's canonical words for the scene it names are put in front, which the denoiser reads far more
reliably than paraphrases. Other folders' prompts are encoded as given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from models.grounding import Reading, SceneGrounder
from models.loading import PromptEncoder
from models.text import CachedEmbeddings

GROUNDED_CACHE = 512
"""Grounded prompts remembered."""
RUN_EMBEDDING_CACHE = 8192
"""Word runs whose sentence embedding grounding remembers (1.5 kB each)."""


class PromptConditioner:
    """Grounds and encodes prompts for one engine.

    Args:
        make_encoder: creates the text encoder on first use (loading one takes a while and tools that
            only sample from given conditionings never need it).
        grounder: the pipeline's `SceneGrounder`, or None; it needs an encoder with sentence embeddings.
        device: where conditionings go.
        dtype: the dtype conditionings are given in.
    """

    def __init__(
        self,
        make_encoder: Callable[[], PromptEncoder],
        grounder: SceneGrounder | None,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self._make_encoder = make_encoder
        self._text_encoder: PromptEncoder | None = None
        self.grounder = grounder.eval() if grounder is not None else None
        self._grounding = self.grounder is not None
        self.device = device
        self.dtype = dtype
        # Grounding a new text embeds all its word runs (a few hundred ms for a server prompt on a CPU);
        # a prompt seen before costs nothing.
        self._grounded = functools.lru_cache(maxsize=GROUNDED_CACHE)(self._ground)
        # What grounding reads word runs with, so a steer embeds only the runs no earlier prompt had.
        self.run_embeddings = CachedEmbeddings(
            lambda texts: self.text_encoder.sentence_embeddings(texts), RUN_EMBEDDING_CACHE
        )

    @property
    def text_encoder(self) -> PromptEncoder:
        """The text encoder (created on first use)."""
        if self._text_encoder is None:
            self._text_encoder = self._make_encoder()
        return self._text_encoder

    @property
    def grounding(self) -> bool:
        """Whether prompts pass through the grounder (on when there is one)."""
        return self._grounding

    @grounding.setter
    def grounding(self, value: bool) -> None:
        if value and self.grounder is None:
            raise ValueError("this pipeline has no grounder (or its text encoder gives no sentence embeddings)")
        self._grounding = bool(value)

    def grounded_prompt(self, text: str) -> str:
        """The prompt the model is given for `text`: with grounding on, the world's canonical words for the
        scene it names, then the viewer's words ("forest at night: evergreens at 2 am")."""
        return self._grounded(text) if self._grounding else text

    def _ground(self, text: str) -> str:
        assert self.grounder is not None
        return self.grounder.expand(text, self.run_embeddings)

    def encode(self, text: str) -> torch.Tensor:
        """Conditioning `[tokens, dim]` for one text (cached by the text encoder), grounded first if on.

        `[32, 384]` MiniLM token states for the shipped model; the pipeline's own text encoder's
        token states (e.g. `[77, 768]` for Stable Diffusion 1.x) for other folders.
        """
        return self.text_encoder.encode([self.grounded_prompt(text)])[0].to(device=self.device, dtype=self.dtype)

    def encode_all(
        self, texts: Sequence[str], readings: Sequence[dict[str, Reading]] | None = None
    ) -> list[torch.Tensor]:
        """`encode` for many texts at once, grounded together in one batch (if on), for evaluation runs of
        hundreds of prompts; not cached. `readings`: what the grounder's `ground` gave for `texts`, where
        the caller has it already."""
        if self._grounding:
            assert self.grounder is not None
            texts = self.grounder.expand_all(texts, self.text_encoder.sentence_embeddings, readings)
        return list(self.text_encoder.encode(list(texts)).to(device=self.device, dtype=self.dtype))

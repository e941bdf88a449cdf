"""Prompt grounding: which of the world's scenes a viewer's words name, said again in the model's own words.

The denoiser draws a scene almost perfectly when the prompt uses the world's canonical words
("a forest at night"), but reads paraphrases ("evergreens at 2 am") less reliably: it learned text
from a few thousand captions, MiniLM knows far more phrasings. The grounder is a small text-only
classifier that sees three things of a prompt:

- MiniLM's sentence embedding of the whole prompt,
- for each attribute value, how close the best-matching word run of the prompt (one to
  `max_words` words) comes to any of the value's training phrases (cosine similarity), and
- each word run's own embedding, scored per value by a second linear layer and pooled over the
  prompt's runs (log-sum-exp), so a telling word ("orange", "boreal") weighs in wherever it stands.

Words the training captions never use are also looked up in a small dictionary table shipped in the
config (`models.lexicon`): "a cataract at night" is read as if it also said "waterfall".

Per attribute value, the logits of both linear layers add up to its probability. A value's logit weighs
its own phrase match only (one weight per value): with every value's match weighed in, the fit learns
margins of its own (noon had to beat dawn's and dusk's matches by more than sunset did), which read
new phrasings worse (see the model card). Each attribute also has
an "unnamed" outcome, scored by the first layer alone: training captions that leave an attribute out
teach it, so a remark such as "hello" puts its probability there rather than on a guess. Where the top
value is probable enough, its canonical phrase is put in front of the prompt; the viewer's words follow,
so nothing they said is lost. It is trained on training captions only (`pixelcast train`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from models.lexicon import WORD, lexicon_phrases

GROUNDED = ("subject", "palette", "weather")
"""The attributes the shipped grounder names: what a single frame shows (pace and camera play out over time)."""

Embed = Callable[[list[str]], torch.Tensor]
"""Texts -> unit-length sentence embeddings `[len(texts), dim]` (e.g. `TextEncoder.sentence_embeddings`)."""


class Reading(NamedTuple):
    """What the grounder reads of one attribute of a prompt."""

    value: str
    """The most probable value."""
    probability: float
    """That value's probability."""
    said: bool
    """Whether its canonical words are put in front of the prompt: its probability reaches the threshold."""

    def says(self, value: str) -> bool:
        """Whether this reading puts `value`'s canonical words in front: read right and sure, if `value` is true."""
        return self.said and self.value == value


def word_runs(text: str, max_words: int) -> list[str]:
    """Every run of 1 to `max_words` consecutive words of `text`, lower-cased, each once."""
    words = WORD.findall(text.lower())
    runs = (" ".join(words[i : i + n]) for n in range(1, max_words + 1) for i in range(len(words) - n + 1))
    return list(dict.fromkeys(runs))


@dataclass
class GrounderInputs:
    """What the grounder reads of a batch of prompts (see `SceneGrounder.features`).

    `prompts`: `[B, dim + values]`, each prompt's sentence embedding and its best phrase match per value;
    `runs`: `[R, dim]`, the embeddings of the distinct word runs of the batch; `run_index`: `[B, L]`,
    which runs each prompt has (-1 pads).
    """

    prompts: torch.Tensor
    runs: torch.Tensor
    run_index: torch.Tensor

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by name, for a checkpoint."""
        return {"prompts": self.prompts, "runs": self.runs, "run_index": self.run_index}

    @classmethod
    def cat(cls, parts: Sequence[GrounderInputs]) -> GrounderInputs:
        """Batches one after another, as if featurized together (a run two batches share is kept twice)."""
        width = max(p.run_index.shape[1] for p in parts)
        indices, offset = [], 0
        for part in parts:
            index = torch.where(part.run_index < 0, part.run_index, part.run_index + offset)
            indices.append(nn.functional.pad(index, (0, width - index.shape[1]), value=-1))
            offset += len(part.runs)
        return cls(
            prompts=torch.cat([p.prompts for p in parts]),
            runs=torch.cat([p.runs for p in parts]),
            run_index=torch.cat(indices),
        )


class SceneGrounder(ModelMixin, ConfigMixin):
    """Prompt -> probability of each value of each grounded attribute; `expand` adds canonical words.

    Args:
        attributes: the grounded attributes, in order (e.g. `GROUNDED`).
        values: per attribute, its values in a fixed order.
        canonical: per attribute, per value, the phrase that says it (e.g. "forest", "at night").
        phrase_values: for each stored phrase embedding, the index of its value in the flattened
            values (attributes in order, values in order).
        embedding_dim: the sentence embedding's size (384 for MiniLM).
        max_words: longest word run compared with the phrases.
        threshold: a value's phrase is added when its probability is at least this.
        spot_scale: the similarity features are multiplied by this (puts them on the embedding's scale).
        run_scores: score every word run's embedding too (pooled per prompt); off in grounders saved
            before it existed.
        unnamed_class: give each attribute an "unnamed" outcome besides its values (the last logit of
            each attribute); off in grounders saved before it existed.
        lexicon: rare word or collocation -> related phrases in the training captions' words (see
            `models.lexicon`); their runs are read beside the prompt's own. None: no dictionary.
        own_match_only: a value's logit weighs its own phrase match alone, not the other values'
            (the "unnamed" outcomes still weigh them all); off in grounders saved before it existed.

    Everything is stored in lists: diffusers writes configs with sorted keys, so a dict's order
    would not survive `save_pretrained`.
    """

    @register_to_config
    def __init__(
        self,
        attributes: list[str],
        values: list[list[str]],
        canonical: list[list[str]],
        phrase_values: list[int],
        embedding_dim: int = 384,
        max_words: int = 5,
        threshold: float = 0.5,
        spot_scale: float = 3.0,
        run_scores: bool = False,
        unnamed_class: bool = False,
        lexicon: dict[str, list[str]] | None = None,
        own_match_only: bool = False,
    ) -> None:
        super().__init__()
        if not len(attributes) == len(values) == len(canonical):
            raise ValueError("attributes, values and canonical must have one entry per attribute")
        self.total_values = sum(len(v) for v in values)
        self.register_buffer("phrase_embeddings", torch.zeros(len(phrase_values), embedding_dim))
        self.register_buffer("phrase_value", torch.tensor(phrase_values, dtype=torch.long), persistent=False)
        unnamed = len(attributes) if unnamed_class else 0
        self.head = nn.Linear(embedding_dim + self.total_values, self.total_values + unnamed)
        self.run_head = nn.Linear(embedding_dim, self.total_values) if run_scores else None
        mask = torch.ones(self.head.weight.shape)
        if own_match_only:
            mask[: self.total_values, embedding_dim:] = torch.eye(self.total_values)
        self.register_buffer("head_mask", mask, persistent=False)

    @torch.no_grad()
    def mask_head(self) -> None:
        """Zero the head weights `own_match_only` leaves out (after initialising the head), so the saved
        weights hold only what is used; the forward pass masks them, so training never moves them."""
        self.head.weight.mul_(self.head_mask)

    def _slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for attr, values in zip(self.config.attributes, self.config.values):
            out[attr] = slice(start, start + len(values))
            start += len(values)
        return out

    @torch.no_grad()
    def features(
        self, texts: Sequence[str], embed: Embed, exclude: Sequence[Sequence[int]] | None = None
    ) -> GrounderInputs:
        """What the grounder reads of `texts`: sentence embeddings, best phrase matches and word runs.

        `exclude` (training only): per text, rows of the phrase table it may not match. A training
        caption's own phrases are left out, so that its best matches are as close as those of a phrasing
        the grounder has never seen; were they kept, every training caption would match some phrase
        exactly and the grounder would learn to trust exact matches only.
        """
        runs_per_text = [self._runs(t) for t in texts]
        runs = list(dict.fromkeys(r for per in runs_per_text for r in per))
        vectors = embed([*texts, *runs]).to(self.phrase_embeddings)
        sentences, run_vectors = vectors[: len(texts)], vectors[len(texts) :]
        position = {run: i for i, run in enumerate(runs)}
        run_index = torch.full((len(texts), max(len(p) for p in runs_per_text)), -1, dtype=torch.long)
        for row, per in enumerate(runs_per_text):
            run_index[row, : len(per)] = torch.tensor([position[r] for r in per])
        run_index = run_index.to(self.phrase_embeddings.device)
        similarity = run_vectors @ self.phrase_embeddings.T
        best = _pool(self._best_per_value(similarity), run_index, fill=-1.0).amax(dim=1)
        for row, excluded in enumerate(exclude or ()):
            if len(excluded):
                own_runs = similarity[run_index[row][run_index[row] >= 0]]
                best[row] = self._best_per_value(own_runs, excluded).amax(dim=0)
        prompts = torch.cat([sentences, self.config.spot_scale * best], dim=1)
        return GrounderInputs(prompts=prompts, runs=run_vectors, run_index=run_index)

    def _runs(self, text: str) -> list[str]:
        """The word runs the grounder reads of `text`: its own, then its rare words' dictionary phrases."""
        own = word_runs(text, self.config.max_words) or [text]
        if not self.config.lexicon:
            return own
        return list(dict.fromkeys([*own, *lexicon_phrases(own, self.config.lexicon)]))

    def _best_per_value(self, similarity: torch.Tensor, excluded: Sequence[int] = ()) -> torch.Tensor:
        """`[runs, phrases]` similarities -> `[runs, values]`: each value's best phrase, bar `excluded` rows."""
        if len(excluded):
            similarity = similarity.index_fill(1, torch.as_tensor(excluded, device=similarity.device), -1.0)
        per_value = torch.full(
            (len(similarity), self.total_values), -1.0, dtype=similarity.dtype, device=similarity.device
        )
        return per_value.scatter_reduce(
            1, self.phrase_value.expand(len(similarity), -1), similarity, reduce="amax", include_self=True
        )

    def forward(self, inputs: GrounderInputs) -> dict[str, torch.Tensor]:
        """Logits per attribute, `{attribute: [B, values]}`, from `inputs` (see `features`); with
        `unnamed_class`, `[B, values + 1]`, the last being "unnamed"."""
        head = nn.functional.linear(inputs.prompts, self.head.weight * self.head_mask, self.head.bias)
        logits = head[:, : self.total_values]
        if self.run_head is not None:
            per_run = _pool(self.run_head(inputs.runs), inputs.run_index, fill=float("-inf"))
            logits = logits + per_run.logsumexp(dim=1)
        out = {attr: logits[:, part] for attr, part in self._slices().items()}
        if self.config.unnamed_class:
            unnamed = head[:, self.total_values :].split(1, dim=1)
            out = {attr: torch.cat([values, none], dim=1) for (attr, values), none in zip(out.items(), unnamed)}
        return out

    @torch.no_grad()
    def ground(self, texts: Sequence[str], embed: Embed) -> list[dict[str, Reading]]:
        """Per prompt: attribute -> its `Reading`; with `unnamed_class`, the probability the prompt leaves
        the attribute unnamed is the rest, so a remark's values are improbable and go unsaid."""
        if not texts:
            return []
        probabilities = {attr: logits.softmax(-1) for attr, logits in self(self.features(texts, embed)).items()}
        out: list[dict[str, Reading]] = [{} for _ in texts]
        for (attr, probs), values in zip(probabilities.items(), self.config.values):
            top, index = probs[:, : len(values)].max(dim=-1)
            said = top >= self.config.threshold
            for row, (p, i, say) in enumerate(zip(top.tolist(), index.tolist(), said.tolist())):
                out[row][attr] = Reading(values[i], p, say)
        return out

    def expand(self, text: str, embed: Embed) -> str:
        """The canonical words of each attribute value `text` names with enough certainty, then `text`.

        "evergreens at 2 am" -> "forest at night: evergreens at 2 am"; a prompt that names nothing the
        world knows, or already says it in the canonical words, comes back unchanged. The canonical
        words lead because MiniLM reads at most 32 tokens: a long prompt loses its end, and these are
        the words the denoiser reads best.
        """
        return self.expand_all([text], embed)[0]

    def expand_all(
        self, texts: Sequence[str], embed: Embed, readings: Sequence[dict[str, Reading]] | None = None
    ) -> list[str]:
        """`expand` for many texts at once: their word runs are embedded together, which is much faster.
        `readings`: what `ground` gave for `texts`, where the caller has it already."""
        readings = self.ground(texts, embed) if readings is None else readings
        return [self._said_again(text, found) for text, found in zip(texts, readings, strict=True)]

    def _said_again(self, text: str, found: dict[str, Reading]) -> str:
        words = [
            canonical[values.index(found[attr].value)]
            for attr, values, canonical in zip(self.config.attributes, self.config.values, self.config.canonical)
            if found[attr].said
        ]
        # words the prompt already has are not said twice: a server prompt ends in the scene's own caption
        words = unsaid(words, text)
        return f"{' '.join(words)}: {text}" if words else text


def unsaid(words: Sequence[str], text: str) -> list[str]:
    """The `words` (or phrases) that `text` does not already say, as whole words in any case."""
    return [w for w in words if not re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)]


def _pool(per_run: torch.Tensor, run_index: torch.Tensor, fill: float) -> torch.Tensor:
    """`[R, V]` rows gathered per prompt as `[B, L, V]`; padded places (-1) hold `fill`."""
    gathered = per_run[run_index.clamp(min=0)]
    return gathered.masked_fill((run_index < 0).unsqueeze(-1), fill)

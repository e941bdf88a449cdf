"""Reduced precision where it pays: bfloat16 copies of a module (and frozen graphs of that copy), used
at the batch sizes where they are faster.

On CPUs with native bfloat16 (AVX-512 BF16, AMX) the decoder's full-resolution convolutions gain much
in bfloat16, while the UNet gains at larger batches and can lose at batch 1, where per-op overhead
dominates (which frozen graphs cut). Without native support bfloat16 is emulated and slower. So nothing
is assumed: ``choose`` times
each variant per batch size on the machine at hand and keeps one only where it is clearly faster.
Outputs are cast back to float32, so callers never see the difference in dtype.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from models.tuning.frozen import FrozenGraphs, TraceMismatch

log = logging.getLogger(__name__)

FAST_DTYPE = torch.bfloat16

#: bfloat16 is kept only when it is at least this much faster, so that timing noise does not flip it.
MIN_GAIN = 0.10

BFLOAT16 = "bfloat16"
FROZEN_BFLOAT16 = "bfloat16-frozen"


class MixedPrecision:
    """A float32 module plus, once ``choose`` found it worthwhile, faster variants for some batch sizes.

    The variants are a bfloat16 copy and, with ``freeze``, that copy as frozen TorchScript graphs.
    Each batch size keeps the fastest variant that beat float32 clearly, or float32.

    Args:
        module: the module as loaded (float32 on a CPU; anything else is left as it is).
        freeze: also try frozen graphs of the bfloat16 copy, built by this class of ``models.tuning.frozen``
            (``FrozenUNet`` for a UNet, ``FrozenDecoder`` for an autoencoder).
    """

    def __init__(
        self, module: torch.nn.Module, *, freeze: Callable[[torch.nn.Module], FrozenGraphs] | None = None
    ) -> None:
        self.full = module
        self.freeze = freeze
        self._fast: torch.nn.Module | None = None
        self._frozen: FrozenGraphs | None = None
        self.choice: dict[int, str] = {}

    @property
    def fast_batches(self) -> set[int]:
        """Batch sizes that run in bfloat16 (eager or frozen)."""
        return set(self.choice)

    @property
    def frozen_batches(self) -> set[int]:
        """Batch sizes that run through the frozen bfloat16 graphs."""
        return {batch for batch, variant in self.choice.items() if variant == FROZEN_BFLOAT16}

    @property
    def eligible(self) -> bool:
        """Whether a bfloat16 copy could help: a float32 module on the CPU with no parts pinned to float32."""
        parameter = next(self.full.parameters())
        pinned = getattr(self.full, "_keep_in_fp32_modules", None)
        return parameter.device.type == "cpu" and parameter.dtype == torch.float32 and not pinned

    def module_for(self, batch: int) -> tuple[Any, torch.dtype]:
        """The module to run a batch of ``batch`` with, and the dtype its floating-point inputs need."""
        variant = self.choice.get(batch)
        if variant == FROZEN_BFLOAT16:
            return self._frozen, FAST_DTYPE
        if variant == BFLOAT16:
            return self._fast, FAST_DTYPE
        parameter = next(self.full.parameters())
        return self.full, parameter.dtype

    def choose(self, batches: Iterable[int], run: Callable[[Any, torch.dtype, int], Any], calls: int = 3) -> None:
        """Time ``run(module, dtype, batch)`` for float32 and each variant per batch size; keep the fastest.

        ``run`` must build its own inputs of that batch size in ``dtype``. Each gets one untimed call
        (which traces a frozen graph), then the best of ``calls`` timed ones. A variant is kept only
        where it is at least ``MIN_GAIN`` faster than float32.
        """
        if not self.eligible:
            return
        variants = {BFLOAT16: self._bfloat16()}
        if self.freeze:
            variants[FROZEN_BFLOAT16] = self._frozen_graphs()
        dtype = next(self.full.parameters()).dtype
        chosen: dict[int, str] = {}
        for batch in batches:
            full = _best_seconds(lambda batch=batch: run(self.full, dtype, batch), calls)
            seconds = {}
            for name, module in list(variants.items()):
                try:
                    seconds[name] = _best_seconds(lambda m=module, batch=batch: run(m, FAST_DTYPE, batch), calls)
                except TraceMismatch as error:  # this model does not freeze faithfully: stay eager
                    log.warning("not using frozen graphs: %s", error)
                    del variants[name]
            fastest = min(seconds, key=seconds.__getitem__)
            if seconds[fastest] < full * (1.0 - MIN_GAIN):
                chosen[batch] = fastest
        self.choice = chosen
        if self._frozen is not None:
            self._frozen.keep_batches(self.frozen_batches)

    def adopt(self, choice: dict[int, str]) -> None:
        """Use a choice made earlier by ``choose`` (batch size -> variant) without timing anything.

        Raises ``ValueError`` for an unknown variant, or for variants this module cannot have.
        """
        unknown = set(choice.values()) - {BFLOAT16, FROZEN_BFLOAT16}
        if unknown:
            raise ValueError(f"unknown precision variant(s): {', '.join(sorted(unknown))}")
        if choice and not self.eligible:
            raise ValueError("only a float32 module on the CPU gets a bfloat16 copy")
        if FROZEN_BFLOAT16 in choice.values():
            if not self.freeze:
                raise ValueError("this module was not set up for frozen graphs (no freeze=)")
            self._frozen_graphs()
        elif choice:
            self._bfloat16()
        self.choice = dict(choice)
        if self._frozen is not None:
            self._frozen.keep_batches(self.frozen_batches)

    def use_fast(self, batches: Iterable[int], *, frozen: bool = False) -> Any:
        """Run these batch sizes in bfloat16 (frozen graphs if ``frozen``) from now on, none of the others;
        return what runs them.

        Raises ``ValueError`` for a module that is not ``eligible``, or ``frozen`` without ``freeze``.
        """
        if not self.eligible:
            raise ValueError("only a float32 module on the CPU gets a bfloat16 copy")
        if frozen and not self.freeze:
            raise ValueError("this module was not set up for frozen graphs (no freeze=)")
        module = self._frozen_graphs() if frozen else self._bfloat16()
        self.choice = dict.fromkeys(batches, FROZEN_BFLOAT16 if frozen else BFLOAT16)
        return module

    def _bfloat16(self) -> torch.nn.Module:
        if self._fast is None:
            # torch's own cast: diffusers' override only adds a warning about float32-pinned parts,
            # and eligible modules have none.
            self._fast = torch.nn.Module.to(copy.deepcopy(self.full), FAST_DTYPE)
        return self._fast

    def _frozen_graphs(self) -> FrozenGraphs:
        if self._frozen is None:
            assert self.freeze is not None
            self._frozen = self.freeze(self._bfloat16())
        return self._frozen


def _best_seconds(call: Callable[[], Any], calls: int) -> float:
    call()
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best

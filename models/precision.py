"""Reduced precision where it pays: bfloat16 copies of a module, used at the batch sizes where they are faster.

On CPUs with native bfloat16 (AVX-512 BF16, AMX) the decoder's full-resolution convolutions run about
twice as fast in bfloat16, and the UNet gains at larger batches but loses at batch 1, where per-op
overhead dominates. Without native support bfloat16 is emulated and slower. So nothing is assumed:
``choose`` times both precisions per batch size on the machine at hand and keeps bfloat16 only where
it is clearly faster. Outputs are cast back to float32, so callers never see the difference in dtype.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

FAST_DTYPE = torch.bfloat16

#: bfloat16 is kept only when it is at least this much faster, so that timing noise does not flip it.
MIN_GAIN = 0.10


class MixedPrecision:
    """A float32 module plus, once ``choose`` found it worthwhile, a bfloat16 copy for some batch sizes.

    Args:
        module: the module as loaded (float32 on a CPU; anything else is left as it is).
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.full = module
        self._fast: torch.nn.Module | None = None
        self.fast_batches: set[int] = set()

    @property
    def eligible(self) -> bool:
        """Whether a bfloat16 copy could help: a float32 module on the CPU with no parts pinned to float32."""
        parameter = next(self.full.parameters())
        pinned = getattr(self.full, "_keep_in_fp32_modules", None)
        return parameter.device.type == "cpu" and parameter.dtype == torch.float32 and not pinned

    def module_for(self, batch: int) -> tuple[torch.nn.Module, torch.dtype]:
        """The module to run a batch of ``batch`` with, and the dtype its floating-point inputs need."""
        if self._fast is not None and batch in self.fast_batches:
            return self._fast, FAST_DTYPE
        parameter = next(self.full.parameters())
        return self.full, parameter.dtype

    def choose(self, batches: Iterable[int], run: Callable[[torch.nn.Module, torch.dtype, int], Any], calls: int = 3) -> None:
        """Time ``run(module, dtype, batch)`` in both precisions for each batch size; keep bfloat16 where it wins.

        ``run`` must build its own inputs of that batch size in ``dtype``. Each side gets one untimed call,
        then the best of ``calls`` timed ones.
        """
        if not self.eligible:
            return
        fast_module = self.use_fast(())
        dtype = next(self.full.parameters()).dtype
        chosen = set()
        for batch in batches:
            full = _best_seconds(lambda: run(self.full, dtype, batch), calls)
            fast = _best_seconds(lambda: run(fast_module, FAST_DTYPE, batch), calls)
            if fast < full * (1.0 - MIN_GAIN):
                chosen.add(batch)
        self.fast_batches = chosen

    def use_fast(self, batches: Iterable[int]) -> torch.nn.Module:
        """Run these batch sizes in bfloat16 from now on (none of the others); return the bfloat16 copy.

        Raises ``ValueError`` for a module that is not ``eligible``.
        """
        if not self.eligible:
            raise ValueError("only a float32 module on the CPU gets a bfloat16 copy")
        if self._fast is None:
            # torch's own cast: diffusers' override only adds a warning about float32-pinned parts,
            # and eligible modules have none.
            self._fast = torch.nn.Module.to(copy.deepcopy(self.full), FAST_DTYPE)
        self.fast_batches = set(batches)
        return self._fast


def _best_seconds(call: Callable[[], Any], calls: int) -> float:
    call()
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best

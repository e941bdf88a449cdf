"""Modules as frozen TorchScript graphs, one per input shape, each checked against the eager module.

A frozen graph runs the whole call without diffusers' Python code in between and with its weights
folded in as constants, which removes the per-layer overhead that dominates small batches on a CPU
(`docs/architecture.md`, Precision, has the figures). Tracing bakes in the shapes
diffusers branches on, so each input shape gets its own graph, traced on first use and compared with
the eager module on that input before it is trusted.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

#: A traced graph must match the eager module within this share of the output's mean magnitude.
TRACE_TOLERANCE = 0.02


class TraceMismatch(RuntimeError):
    """A frozen graph did not reproduce the eager module (or could not be traced)."""


class FrozenGraphs:
    """Frozen graphs of `positional` (a module taking tensors and returning one), keyed by input shapes.

    Subclasses give it the calling convention of the module they stand in for.
    """

    def __init__(self, positional: torch.nn.Module) -> None:
        self._positional = positional.eval()
        self._graphs: dict[tuple[Any, ...], torch.jit.ScriptModule] = {}  # (batch, shapes and dtypes) -> graph

    @property
    def shapes_traced(self) -> int:
        """How many input shapes have a graph so far."""
        return len(self._graphs)

    def keep_batches(self, batches: set[int]) -> None:
        """Drop the graphs of other batch sizes (traced while timing, then not chosen)."""
        self._graphs = {key: graph for key, graph in self._graphs.items() if key[0] in batches}

    def run(self, *args: torch.Tensor) -> torch.Tensor:
        """The module's output for `args` through the graph of their shapes (traced on first use).

        Raises `TraceMismatch` when that graph cannot be traced or does not match the eager module.
        """
        key = (args[0].shape[0], *((tuple(a.shape), a.dtype) for a in args))  # batch size first
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._trace(args)
        return graph(*args)

    def _trace(self, args: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
        # Traced outside inference mode (tracing records ops), on plain copies of the example inputs.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # diffusers' shape checks warn on every trace; the comparison below is the check that counts
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            example = tuple(a.clone() for a in args)  # clone keeps the memory format the caller uses
            try:
                traced = torch.jit.trace(self._positional, example, check_trace=False)
                graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                got = graph(*example).float()  # the first runs of a frozen graph also compile it
                graph(*example)
            except RuntimeError as error:
                raise TraceMismatch(f"{type(self).__name__}: could not freeze: {error}") from error
            want = self._positional(*example).float()
        error = float((got - want).abs().mean() / want.abs().mean().clamp(min=1e-6))
        if not error <= TRACE_TOLERANCE:
            raise TraceMismatch(f"{type(self).__name__}: the frozen graph differs by {error:.3f} of its output")
        return graph


class _PositionalUNet(torch.nn.Module):
    """The UNet with positional arguments and a plain tensor out, as tracing needs."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        sample, timestep, context = args[:3]
        labels = args[3] if len(args) > 3 else None
        return self.unet(sample, timestep, encoder_hidden_states=context, class_labels=labels, return_dict=False)[0]


class FrozenUNet(FrozenGraphs):
    """Calls like a `UNet2DConditionModel` (`(sample, timestep, encoder_hidden_states=, class_labels=)` ->
    `.sample`), through a frozen graph per input shape.

    Args:
        unet: the eager UNet, already in the dtype the graphs should run in; it is not modified.
    """

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__(_PositionalUNet(unet))

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
    ) -> UNet2DConditionOutput:
        """One UNet call; the timestep stays an input of the graph, so every step count shares it."""
        timestep = torch.as_tensor(timestep, device=sample.device)
        args = (sample, timestep, encoder_hidden_states) + (() if class_labels is None else (class_labels,))
        return UNet2DConditionOutput(sample=self.run(*args))


class _Decode(torch.nn.Module):
    """An autoencoder's `decode` as a module from latents to a plain tensor, as tracing needs."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


class FrozenDecoder(FrozenGraphs):
    """Decodes like a diffusers autoencoder (`decode(latents).sample`), through a frozen graph per shape.

    Args:
        vae: the eager autoencoder, already in the dtype the graphs should run in; it is not modified.
    """

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__(_Decode(vae))

    def decode(self, latents: torch.Tensor) -> DecoderOutput:
        """Images `[B, 3, H, W]` in [-1, 1] for latents `[B, C, h, w]`."""
        return DecoderOutput(sample=self.run(latents))

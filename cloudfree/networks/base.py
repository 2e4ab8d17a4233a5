"""The one interface every cloud-removal network implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from cloudfree.core.errors import CloudfreeError

#: Channels of the interface: the 13 L1C bands in, the 13 bands out, and S1 VV + VH.
S2_BANDS = 13
S1_BANDS = 2
#: How many offending keys a state-dict mismatch error names.
_SHOWN_KEYS = 4


class CloudRemovalNet(nn.Module):
    """forward(s2 [B,13,H,W], s1 [B,2,H,W]) on scaled inputs -> cloud-free s2 [B,13,H,W].

    Subclasses set ``arch`` (registry name), ``presets`` (at least ``paper`` and ``small``, each
    naming every constructor parameter), ``default_preset`` (the preset equal to the constructor
    defaults), ``size_multiple`` (H and W must be multiples of it) and implement
    ``receptive_field``.
    With ``return_aux=True`` forward returns ``(output, aux)`` where ``aux`` holds auxiliary
    outputs for training (e.g. ``gate``, ``kl``); otherwise just the output tensor.

    Networks that set ``uses_mask`` work on top of the classical fill
    (``cloudfree/fill/median.py``): their ``s2`` has the masked pixels already filled, and
    ``forward`` takes the fill mask ``mask`` [B,1,H,W] (1 filled, 0 clear) as a third input; no mask
    means nothing was filled.
    """

    arch: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict]] = {}
    default_preset: ClassVar[str] = "paper"
    size_multiple: ClassVar[int] = 1
    #: True when output at a pixel depends only on inputs within ``receptive_field`` pixels, so
    #: tiled inference with that much overlap equals whole-image inference.
    fully_convolutional: ClassVar[bool] = True
    #: True when the network takes the fill mask (see the class docstring).
    uses_mask: ClassVar[bool] = False
    #: True when its ONNX graph holds for any tile size (no size-bound reshapes), so CPU
    #: inference in fp32 runs it in onnxruntime (``engines.TorchEngine``).
    onnx_any_size: ClassVar[bool] = False
    #: The ``cloudfree.training.losses`` objective ``train`` uses unless told otherwise: the
    #: paper's own where it defines one.
    default_loss: ClassVar[str] = "l1"
    #: True when parts of the network are trained only by ``default_loss`` (IB-HFN's KL and
    #: gate), so ``train`` refuses any other loss.
    requires_default_loss: ClassVar[bool] = False

    def __init__(self, **config) -> None:
        super().__init__()
        self.config = dict(config)

    def load_checked_state(self, state: Mapping[str, torch.Tensor], what: str,
                           ignore: tuple[str, ...] = ()) -> None:
        """Load a state dict strictly; a mismatch is one line naming the first offending keys.

        ``what`` names the source in the error. Keys ending in one of ``ignore`` may be missing
        or unexpected (size-bound buffers).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state and not k.endswith(ignore)]
        unexpected = [k for k in state if k not in own and not k.endswith(ignore)]
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                  for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
        problems = [f"{label} {_few(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
                    if keys]
        if problems:
            raise CloudfreeError(f"{what}: state dict does not match {self.arch}: "
                                 + "; ".join(problems))
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)

    def receptive_field(self) -> int:
        """Radius in pixels of the input region that influences one output pixel."""
        raise NotImplementedError

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError when the input size does not fit the architecture."""
        m = self.size_multiple
        if height % m or width % m:
            raise ValueError(f"{self.arch} needs height and width that are multiples of {m}, "
                             f"got {height}x{width}")

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, return_aux: bool = False):
        raise NotImplementedError


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return f"{len(keys)} ({shown}{f', +{more} more' if more > 0 else ''})"

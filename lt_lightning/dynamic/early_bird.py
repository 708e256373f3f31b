"""Early-bird tickets (You et al. 2020): during dense training, the magnitude masks at the target density are
compared between consecutive checks; once their normalized Hamming distance has stayed below a threshold for a
window of checks, the masks have settled and the ticket can be drawn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lt_lightning.masks import Masks

__all__ = ["MaskSettling", "hamming_distance"]


def hamming_distance(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Fraction of the masked positions whose kept/pruned status differs between two masks over the same parameters.

    >>> import torch
    >>> hamming_distance({"w": torch.tensor([True, True, False, False])}, {"w": torch.tensor([True, False, True, False])})
    0.5
    """
    if list(a) != list(b):
        raise ValueError(f"the masks cover different parameters: {list(a)[:5]} vs {list(b)[:5]}.")
    differ = sum(int((a[n].cpu() != b[n].cpu()).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    return differ / max(total, 1)


class MaskSettling:
    """Consecutive masks and their distances; :attr:`settled` once the last ``window`` distances are all below
    ``threshold`` (the FIFO rule of You et al.: the largest distance in the window is below it).

    >>> import torch
    >>> rule = MaskSettling(threshold=0.1, window=2)
    >>> [rule.observe(Masks({"w": torch.tensor(m)})) for m in ([1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0])]
    [None, 0.5, 0.0, 0.0]
    >>> rule.settled
    True
    """

    def __init__(self, threshold: float, window: int) -> None:
        self.threshold = threshold
        self.window = window
        self.previous: Masks | None = None
        self.distances: list[float] = []

    def observe(self, masks: Masks) -> float | None:
        """Record the masks of a check; the distance to the previous check's (``None`` at the first check)."""
        distance = hamming_distance(self.previous, masks) if self.previous is not None else None
        if distance is not None:
            self.distances.append(distance)
        self.previous = masks.to("cpu")
        return distance

    @property
    def settled(self) -> bool:
        recent = self.distances[-self.window:]
        return len(recent) == self.window and max(recent) < self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous.pack() if self.previous is not None else None,
                "distances": list(self.distances)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = Masks.unpack(state["previous"]) if state["previous"] is not None else None
        self.distances = list(state["distances"])

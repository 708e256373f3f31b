"""How alike two tickets' masks are: intersection over union of the kept weights, per layer and overall, next to
what two random masks of the same densities would share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["mask_similarity"]


def mask_similarity(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, Any]:
    """IoU of the kept weights of two masks over the same parameters (any order), per layer and over all of them.

    Plain data: ``iou`` and ``random_iou`` overall, and ``layers``: per parameter ``iou``, ``density_a``,
    ``density_b`` and ``random_iou``, the IoU two independent uniformly random masks with the same numbers of kept
    weights have in expectation (``k_a k_b / n`` shared out of ``k_a + k_b - k_a k_b / n``): where a ticket's IoU
    with another stands against chance. Two layers that keep nothing have IoU 1.

    >>> import torch
    >>> a = {"w": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "v": torch.tensor([1, 0], dtype=torch.bool)}
    >>> b = {"w": torch.tensor([1, 0, 1, 0], dtype=torch.bool), "v": torch.tensor([1, 0], dtype=torch.bool)}
    >>> s = mask_similarity(a, b)
    >>> round(s["iou"], 4), round(s["layers"]["w"]["iou"], 4), s["layers"]["w"]["random_iou"], s["layers"]["v"]["iou"]
    (0.5, 0.3333, 0.3333333333333333, 1.0)
    """
    if set(a) != set(b):
        raise ValueError(f"the masks cover different parameters: only in the first {sorted(set(a) - set(b))[:5]},"
                         f" only in the second {sorted(set(b) - set(a))[:5]}.")
    layers = {}
    inter = union = expected_inter = expected_union = 0.0
    for name, mask in a.items():
        other = b[name]
        if tuple(mask.shape) != tuple(other.shape):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)} in the first and {tuple(other.shape)} in"
                             " the second: they belong to different architectures.")
        mask, other = mask.bool().cpu(), other.bool().cpu()
        n, k_a, k_b = mask.numel(), int(mask.sum()), int(other.sum())
        shared, either = int((mask & other).sum()), int((mask | other).sum())
        chance = k_a * k_b / n if n else 0.0
        layers[name] = {"iou": shared / either if either else 1.0, "density_a": k_a / n if n else 1.0,
                        "density_b": k_b / n if n else 1.0, "random_iou": _ratio(chance, k_a + k_b - chance)}
        inter, union = inter + shared, union + either
        expected_inter, expected_union = expected_inter + chance, expected_union + k_a + k_b - chance
    return {"iou": inter / union if union else 1.0, "random_iou": _ratio(expected_inter, expected_union),
            "layers": layers}


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 1.0

"""The scalars of one IMP round, as every logger (CSV, TensorBoard, W&B) receives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def round_scalars(record: Mapping[str, Any], prefix: str = "imp") -> dict[str, float]:
    """Flatten a round record of ``IMPCallback.history`` into ``{prefix}/...`` scalars.

    >>> round_scalars({"round": 2, "density": 0.64, "layer_density": {"fc.weight": 0.5},
    ...                "final": {"val_acc": 0.9}, "best": {"val_acc": 0.92}, "best_step": 300})
    {'imp/round': 2.0, 'imp/density': 0.64, 'imp/layer_density/fc.weight': 0.5, 'imp/final/val_acc': 0.9, \
'imp/best/val_acc': 0.92, 'imp/best_step': 300.0}
    """
    scalars = {f"{prefix}/round": float(record["round"]), f"{prefix}/density": float(record["density"])}
    scalars.update({f"{prefix}/layer_density/{n}": float(d) for n, d in record.get("layer_density", {}).items()})
    scalars.update({f"{prefix}/final/{k}": float(v) for k, v in record.get("final", {}).items()})
    scalars.update({f"{prefix}/best/{k}": float(v) for k, v in record.get("best", {}).items()})
    scalars.update({f"{prefix}/basin/{k}": float(v) for k, v in (record.get("basin") or {}).items()})
    for key in ("best_step", "mask_overlap", "distance_from_rewind"):
        if record.get(key) is not None:
            scalars[f"{prefix}/{key}"] = float(record[key])
    return scalars

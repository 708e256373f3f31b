"""Linear mode connectivity: evaluate a network along the straight line between two states, and its barrier.

Two trainings of one network (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis")
are *linearly connected* when the error does not rise along ``(1 - a) * A + a * B`` for ``a`` in ``[0, 1]``. Their
*instability* is the **error barrier**: the maximum error along the path minus the mean of the two endpoints' errors.
:func:`interpolate` writes each point into the one module given (no copies of the network), calls ``evaluate`` and
restores the module afterwards; :func:`error_barrier` and :func:`loss_barrier` read the barrier off the curve.

Two things change the path and are explicit arguments:

- ``masks``: a sparse ticket's two trainings share masks; pruned weights are then exactly zero at every point.
  Without masks the path is the one between the dense tensors as they are (see :func:`interpolate`).
- ``bn_batches``: mixing BatchNorm running statistics does not give the statistics of the mixed network (the
  variance of mixed features is not the mix of the variances: Jordan et al. 2022, "REPAIR"), which inflates barriers
  of networks with BatchNorm. Given a few training batches, the statistics are re-estimated at every point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lt_lightning.masks import Masks, plain_state_dict

__all__ = [
    "cosine_similarity",
    "error_barrier",
    "interpolate",
    "l2_distance",
    "loss_barrier",
    "reestimate_batchnorm",
    "support_overlap",
    "to_error",
]

Curve = list[dict[str, float]]


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_same_keys(first: Mapping[str, Any], second: Mapping[str, Any], what: tuple[str, str]) -> None:
    missing = [k for k in first if k not in second]
    if missing:
        raise ValueError(f"{what[1]} lacks {missing[0]!r}, which {what[0]} has (missing: {_preview(missing)}).")
    extra = [k for k in second if k not in first]
    if extra:
        raise ValueError(f"{what[1]} has {extra[0]!r}, which {what[0]} lacks (extra: {_preview(extra)}).")


def _check_states(state_a: Mapping[str, Any], state_b: Mapping[str, Any]) -> None:
    """Same keys, and for tensors the same shapes and the same kind (floating or not)."""
    _check_same_keys(state_a, state_b, ("state_a", "state_b"))
    for key, a in state_a.items():
        b = state_b[key]
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            continue
        if a.shape != b.shape:
            raise ValueError(
                f"{key!r} has shape {tuple(a.shape)} in state_a but {tuple(b.shape)} in state_b:"
                " the states belong to different architectures."
            )
        if a.is_floating_point() != b.is_floating_point():
            raise ValueError(f"{key!r} has dtype {a.dtype} in state_a but {b.dtype} in state_b.")


def _float_names(
    state_a: Mapping[str, Any], state_b: Mapping[str, Any], names: Iterable[str] | None
) -> list[str]:
    """The entries the distance helpers compare: ``names``, or every floating-point tensor both states hold."""
    if names is None:
        chosen = [
            k
            for k, a in state_a.items()
            if isinstance(a, Tensor) and a.is_floating_point() and isinstance(state_b.get(k), Tensor)
        ]
        if not chosen:
            raise ValueError("state_a and state_b share no floating-point tensor to compare.")
        return chosen
    chosen = list(names)
    if not chosen:
        raise ValueError("names is empty: name at least one entry to compare.")
    for k in chosen:
        for label, state in (("state_a", state_a), ("state_b", state_b)):
            if not isinstance(state.get(k), Tensor):
                raise ValueError(f"names holds {k!r}, which {label} lacks; {label} has: {_preview(list(state))}.")
        if not (state_a[k].is_floating_point() and state_b[k].is_floating_point()):
            raise ValueError(f"{k!r} is not a floating-point tensor ({state_a[k].dtype}, {state_b[k].dtype}).")
        if state_a[k].shape != state_b[k].shape:
            raise ValueError(
                f"{k!r} has shape {tuple(state_a[k].shape)} in state_a but {tuple(state_b[k].shape)} in state_b."
            )
    return chosen


def _batchnorms(module: nn.Module) -> list[_BatchNorm]:
    """BatchNorm layers (any dimension, SyncBatchNorm included) that keep running statistics."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


_EMPTY = object()


def _default_forward(module: nn.Module, batch: Any) -> Any:
    # A (inputs, targets) batch feeds its inputs; anything else is the input itself.
    return module(batch[0]) if isinstance(batch, (tuple, list)) else module(batch)


def reestimate_batchnorm(
    module: nn.Module,
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> None:
    """Recompute the running statistics of every BatchNorm layer of ``module`` from ``batches``, in place.

    The statistics are reset and re-accumulated as a cumulative (equal-weight per batch) average (``momentum=None``)
    over the batches, forwarded under ``torch.no_grad()`` with only the BatchNorm layers in train mode (dropout and
    the like stay off, so the statistics are those of the network that will be evaluated). Momentum and the train/eval
    mode of every submodule are restored afterwards. ``forward(module, batch)`` defaults to ``module(batch[0])`` for
    a tuple or list batch and ``module(batch)`` otherwise.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> _ = nn.init.eye_(net[0].weight); _ = nn.init.zeros_(net[0].bias)
    >>> reestimate_batchnorm(net, [torch.tensor([[1.0, 2.0], [3.0, 6.0]])])
    >>> net[1].running_mean.tolist(), net[1].momentum, net.training
    ([2.0, 4.0], 0.1, True)
    """
    forward = _default_forward if forward is None else forward
    norms = _batchnorms(module)
    if not norms:
        raise ValueError(f"{type(module).__name__} has no BatchNorm layer with running statistics to re-estimate.")
    iterator = iter(batches)
    first = next(iterator, _EMPTY)
    if first is _EMPTY:  # checked before anything is reset: an empty loader must not leave mean 0 / variance 1
        raise ValueError("batches is empty: re-estimating BatchNorm statistics needs at least one batch.")
    modes = [(m, m.training) for m in module.modules()]
    momenta = [(m, m.momentum) for m in norms]
    try:
        module.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average: every batch counts the same
            norm.train()
        with torch.no_grad():
            forward(module, first)
            for batch in iterator:
                forward(module, batch)
    finally:
        for norm, momentum in momenta:
            norm.momentum = momentum
        for sub, training in modes:
            sub.training = training


def _metrics(values: Any, alpha: float) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(f"evaluate must return a mapping str -> float; at alpha={alpha} it returned {type(values)}.")
    out: dict[str, float] = {}
    for name, value in values.items():
        if name == "alpha":
            raise ValueError("evaluate returned a metric named 'alpha', the key the curve uses for the position.")
        if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool:
            value = value.item()  # a logged scalar tensor (torchmetrics' compute()) is a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"evaluate returned {name!r} = {value!r} ({type(value).__name__}) at alpha={alpha}: metrics must be"
                " real numbers (float, int or a one-element tensor)."
            )
        out[str(name)] = float(value)
    return out


def _storage(tensor: Tensor) -> tuple[torch.device, int]:
    return tensor.device, tensor.untyped_storage().data_ptr()


def _stored(value: Tensor, target: Tensor, module_storages: set, key: str, original: Mapping[str, Tensor]) -> Tensor:
    """``value``, or a saved copy of it when it shares memory with the module (whose tensors get overwritten)."""
    if value.device == target.device and value.data_ptr() == target.data_ptr() and value.shape == target.shape:
        return original[key]  # e.g. state_a = module.state_dict(): its tensors are the module's own
    if _storage(value) in module_storages:
        return value.detach().to("cpu", copy=True)  # a view of another of the module's tensors: rare, copy it alone
    return value


@torch.no_grad()
def _write(target: Tensor, a: Tensor, b: Tensor, alpha: float, first: bool, last: bool) -> None:
    if not target.is_floating_point() or first:
        # Endpoints are copied, not lerped: lerp(a, b, 0) is a + 0 * (b - a), which turns -0.0 into 0.0 and inf
        # into nan. Integer buffers (BatchNorm's num_batches_tracked) have no midpoint: A's are kept.
        target.copy_(a)
    elif last:
        target.copy_(b)
    else:
        target.copy_(a).lerp_(b.to(device=target.device, dtype=target.dtype), alpha)


def interpolate(
    module: nn.Module,
    state_a: Mapping[str, Any],
    state_b: Mapping[str, Any],
    evaluate: Callable[[nn.Module], Mapping[str, float]],
    points: int = 30,
    *,
    masks: Mapping[str, Tensor] | None = None,
    bn_batches: Iterable[Any] | None = None,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> Curve:
    """Evaluate ``module`` at ``points`` evenly spaced points of the segment from ``state_a`` to ``state_b``.

    Returns one dict per point, ``{"alpha": a, **evaluate(module)}``, for ``a = torch.linspace(0, 1, points)``
    (30 points by default, as Frankle et al. 2020). Every floating-point entry of the state dicts (parameters and
    float buffers) is set to ``(1 - a) * A + a * B``; integer buffers (BatchNorm's ``num_batches_tracked``) take A's
    value at every point. The endpoints are A and B bit for bit (they are copied, not computed).

    The states are written **into** ``module``, one point after the other, under ``torch.no_grad()``; ``evaluate`` is
    then called with the module in eval mode (it may switch modes or use gradients itself). At the end, even when
    ``evaluate`` raises, the module gets back its weights, buffers and the train/eval mode of every submodule. The
    only copy made is that saved state, on CPU. The states may live on another device than the module (e.g. CPU
    snapshots, :attr:`lt_lightning.state.Snapshot.model`): each tensor is then moved when it is used, one at a time;
    put them on the module's device first when that memory is available and speed matters. Passing
    ``module.state_dict()`` as a state is safe: the saved copy stands in for it.

    ``masks`` (parameter name -> keep-mask, e.g. :class:`lt_lightning.masks.Masks`) zero the pruned weights at every
    point after mixing, so they are exactly zero along the whole path, whatever the states hold there (a state with
    nonzero pruned weights is evaluated masked, its endpoint too). Without ``masks`` nothing is zeroed: two states
    that do not share masks are mixed as the dense tensors they are, and a weight kept by one and pruned by the other
    goes linearly from its value to 0, so the interior of the path is as dense as the union of the two supports
    (:func:`support_overlap` tells whether two states share their zeros).

    BatchNorm: with ``bn_batches`` (a few training batches; an iterable that can be iterated again, such as a list
    or a DataLoader; a one-shot iterator is read into a list first), the running statistics are re-estimated by
    :func:`reestimate_batchnorm` at every point, endpoints included, so that all points are measured the same way.
    Without it (the default, as there is no data to re-estimate with) the statistics are mixed like other float
    buffers, which overstates the barrier of networks with BatchNorm (Jordan et al. 2022), and a warning says so.
    ``forward(module, batch)`` is as in :func:`reestimate_batchnorm`.

    >>> net = nn.Linear(1, 1, bias=False)
    >>> a, b = {"weight": torch.zeros(1, 1)}, {"weight": torch.ones(1, 1)}
    >>> curve = interpolate(net, a, b, lambda m: {"w": m.weight.item()}, points=3)
    >>> [(p["alpha"], p["w"]) for p in curve]
    [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points={points!r} must be an int >= 2 (the two endpoints at least).")
    _check_states(state_a, state_b)
    # Detached tensors that share memory with the module's parameters and buffers, by plain name (as tickets).
    targets = plain_state_dict(module)
    _check_same_keys(targets, state_a, (f"the module ({type(module).__name__})", "state_a"))
    for key, target in targets.items():
        for label, state in (("state_a", state_a), ("state_b", state_b)):
            value = state[key]
            if isinstance(target, Tensor) and (not isinstance(value, Tensor) or value.shape != target.shape):
                found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{key!r} has shape {tuple(target.shape)} in the module but {found} in {label}.")
    # Non-tensor entries (a module's ``_extra_state``) have no line between them: they are left as they are.
    keys = [k for k, t in targets.items() if isinstance(t, Tensor)]

    pruned: dict[str, Tensor] = {}
    if masks is not None:
        masks = masks if isinstance(masks, Masks) else Masks(masks)
        for name, mask in masks.items():
            if name not in targets or not isinstance(targets[name], Tensor):
                raise ValueError(
                    f"masks name {name!r}, which the states lack; they hold: {_preview(list(targets))}."
                )
            if tuple(mask.shape) != tuple(targets[name].shape):
                raise ValueError(
                    f"mask {name!r} has shape {tuple(mask.shape)} but the weight has {tuple(targets[name].shape)}."
                )
            if not targets[name].is_floating_point():
                raise ValueError(f"mask {name!r} is for a {targets[name].dtype} tensor; only float weights are pruned.")
            pruned[name] = ~mask.to(device=targets[name].device, dtype=torch.bool)

    norms = _batchnorms(module)
    if bn_batches is not None:
        if not norms:
            warnings.warn(
                f"bn_batches is given but {type(module).__name__} has no BatchNorm layer with running statistics:"
                " there is nothing to re-estimate, the batches are not used.",
                UserWarning,
                stacklevel=2,
            )
            bn_batches = None
        elif iter(bn_batches) is bn_batches:  # a generator would be exhausted after the first point
            bn_batches = list(bn_batches)
    elif norms:
        warnings.warn(
            f"{type(module).__name__} has BatchNorm layers and no bn_batches were given: their running statistics are"
            " interpolated, which is not the statistics of the interpolated network and overstates the barrier"
            " (Jordan et al. 2022). Pass a few training batches as bn_batches to re-estimate them at every point.",
            UserWarning,
            stacklevel=2,
        )

    modes = [(m, m.training) for m in module.modules()]
    original = {k: targets[k].detach().to("cpu", copy=True) for k in keys}
    storages = {_storage(targets[k]) for k in keys}
    source_a = {k: _stored(state_a[k], targets[k], storages, k, original) for k in keys}
    source_b = {k: _stored(state_b[k], targets[k], storages, k, original) for k in keys}

    alphas = torch.linspace(0.0, 1.0, points, dtype=torch.float64).tolist()
    curve: Curve = []
    try:
        for index, alpha in enumerate(alphas):
            first, last = index == 0, index == points - 1
            alpha = 0.0 if first else 1.0 if last else alpha
            with torch.no_grad():
                for key in keys:
                    _write(targets[key], source_a[key], source_b[key], alpha, first, last)
                for key, off in pruned.items():
                    targets[key].masked_fill_(off, 0.0)
            if bn_batches is not None:
                reestimate_batchnorm(module, bn_batches, forward)
            module.eval()
            curve.append({"alpha": alpha, **_metrics(evaluate(module), alpha)})
    finally:
        with torch.no_grad():
            for key in keys:
                targets[key].copy_(original[key])
        for sub, training in modes:
            sub.training = training
    return curve


def _values(curve: Sequence[Mapping[str, float]], key: str) -> list[float]:
    if len(curve) < 2:
        raise ValueError(f"the curve has {len(curve)} point(s); a barrier needs both endpoints at least.")
    for index, point in enumerate(curve):
        if key not in point:
            available = [k for k in point if k != "alpha"]
            raise ValueError(f"key={key!r} is not in the curve's metrics (point {index}); available: {available}.")
    return [float(point[key]) for point in curve]


def _barrier(values: Sequence[float]) -> float:
    if any(math.isnan(v) for v in values):  # max() with nan depends on the order: say it plainly instead
        return math.nan
    return max(values) - (values[0] + values[-1]) / 2


def error_barrier(
    curve: Sequence[Mapping[str, float]], key: str = "val_err", *, higher_is_better: bool = False
) -> float:
    """Instability of Frankle et al. 2020: the maximum error along the path minus the mean of the endpoints' errors.

    The endpoints are ``curve[0]`` and ``curve[-1]``. ``higher_is_better=True`` reads ``key`` as an accuracy: the
    barrier is then that of the error ``1 - acc`` (or ``100 - acc``; the scale cancels), i.e. the mean endpoint
    accuracy minus the lowest accuracy on the path. The barrier is never negative: a path that never rises above its
    worse endpoint gives half the endpoints' difference (0 for equal endpoints). NaN anywhere gives NaN.

    >>> curve = [{"val_err": 0.10}, {"val_err": 0.50}, {"val_err": 0.20}]
    >>> round(error_barrier(curve), 4)
    0.35
    >>> round(error_barrier([{"acc": 0.9}, {"acc": 0.5}, {"acc": 0.8}], key="acc", higher_is_better=True), 4)
    0.35
    """
    values = _values(curve, key)
    return _barrier([-v for v in values] if higher_is_better else values)


def loss_barrier(curve: Sequence[Mapping[str, float]], key: str = "val_loss") -> float:
    """The same barrier on the loss: maximum loss along the path minus the mean of the endpoints' losses.

    >>> loss_barrier([{"val_loss": 1.0}, {"val_loss": 4.0}, {"val_loss": 2.0}])
    2.5
    """
    return _barrier(_values(curve, key))


def to_error(
    curve: Sequence[Mapping[str, float]], key: str = "val_acc", scale: float = 1.0, out_key: str = "val_err"
) -> Curve:
    """A copy of ``curve`` with ``out_key = scale - curve[key]``: error from accuracy in ``[0, 1]`` (``scale=1``) or
    in percent (``scale=100``), e.g. to plot or to pass to :func:`error_barrier`.

    >>> to_error([{"alpha": 0.0, "val_acc": 97.5}], scale=100)
    [{'alpha': 0.0, 'val_acc': 97.5, 'val_err': 2.5}]
    """
    out: Curve = []
    for index, point in enumerate(curve):
        if key not in point:
            available = [k for k in point if k != "alpha"]
            raise ValueError(f"key={key!r} is not in the curve's metrics (point {index}); available: {available}.")
        out.append({**point, out_key: scale - float(point[key])})
    return out


def _pairs(state_a: Mapping[str, Any], state_b: Mapping[str, Any], names: Iterable[str] | None):
    for k in _float_names(state_a, state_b, names):
        a = state_a[k].detach()
        yield a.double(), state_b[k].detach().to(device=a.device, dtype=torch.float64)


def l2_distance(state_a: Mapping[str, Any], state_b: Mapping[str, Any], names: Iterable[str] | None = None) -> float:
    """Euclidean distance ``|A - B|`` over the entries ``names`` (default: every floating-point tensor both hold,
    buffers included; pass ``[n for n, _ in module.named_parameters()]`` or a masks' keys to restrict it).

    >>> l2_distance({"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([3.0, 4.0])})
    5.0
    """
    return math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in _pairs(state_a, state_b, names)))


def cosine_similarity(
    state_a: Mapping[str, Any], state_b: Mapping[str, Any], names: Iterable[str] | None = None
) -> float:
    """Cosine of the angle between A and B flattened over the entries ``names`` (defaults as :func:`l2_distance`).

    >>> cosine_similarity({"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])})  # doctest: +ELLIPSIS
    0.7071...
    """
    dot = norm_a = norm_b = 0.0
    for a, b in _pairs(state_a, state_b, names):
        dot += float((a * b).sum())
        norm_a += float(a.pow(2).sum())
        norm_b += float(b.pow(2).sum())
    for label, norm in (("state_a", norm_a), ("state_b", norm_b)):
        if norm == 0.0:
            raise ValueError(f"{label} is all zeros over the chosen entries: the cosine similarity is undefined.")
    return dot / math.sqrt(norm_a * norm_b)


def support_overlap(
    state_a: Mapping[str, Any], state_b: Mapping[str, Any], names: Iterable[str] | None = None
) -> float:
    """Intersection over union of the nonzero entries of A and B over ``names`` (defaults as :func:`l2_distance`).

    1.0 means the two states have the same zeros (e.g. one ticket's masks); below it, an :func:`interpolate` without
    ``masks`` mixes weights that one state prunes and the other keeps.

    >>> support_overlap({"w": torch.tensor([1.0, 2.0, 0.0])}, {"w": torch.tensor([3.0, 0.0, 0.0])})
    0.5
    """
    inter = union = 0
    for a, b in _pairs(state_a, state_b, names):
        inter += int(((a != 0) & (b != 0)).sum())
        union += int(((a != 0) | (b != 0)).sum())
    return inter / union if union else 1.0

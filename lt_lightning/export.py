"""Export a ticket to a plain ``nn.Module`` that is smaller and, where measured so, faster: the saving stated.

A ticket is masks beside float weights of the full dense size, so as it is it runs no faster and stores no smaller
than the dense model. :func:`export_ticket` applies it and replaces each prunable layer by a sparse module where a
sparse kernel *measured* on the target device and batch sizes beats the dense layer at every one of them by
:data:`MARGIN`; every other layer stays dense, with its masked weights. CSR matrix products pay only at high sparsity
(on CPU they break even near 90% and are several times slower at 50%), hence the measurement rather than a rule.
Never a slower model by default: the exported model is then timed whole against the masked dense one, and if it is
not faster at every batch size (a layer's win lost in the model, say to the layout its output hands on), every
swapped layer goes back to dense, with that reason in the report.

- ``Linear`` -> :class:`SparseLinear`: the weight as a ``torch.sparse_csr`` tensor with int32 indices (the
  smallest integer type torch's CSR kernels take; int64 only past 2**31 entries).
- ``Conv2d`` (``groups=1``, zero padding) -> :class:`SparseConv2d`: ``unfold`` then the CSR product, exact; on CPU it
  is rarely faster than the dense convolution, and a layer that is not stays dense (the report says so).
- other layers (transposed convolutions, attention projections, layers the example input does not reach) stay dense.

On disk every masked weight, sparse or dense in memory, is stored in its smallest form (:class:`PackedLinear`, ...):
CSR with values in float32 or float16 (``dtype``) and indices in the smallest integer type that holds them, or for
a binary (biprop) layer its mask and sign bits and one alpha (about ``1 + density`` bits a weight), or dense where
that is smaller. Loading rebuilds each weight in float32, as it ran when measured: torch's CPU CSR kernels take no
float16.

Exactness: the exported module's outputs equal the masked dense model's within ``atol = rtol = 1e-4``
(:data:`TOLERANCE`; float32 values: the same products summed in another order); with ``dtype="float16"`` they equal,
within the same tolerance, those of the masked dense model whose kept weights are rounded to float16.

The file (:func:`save_exported`) is the module itself, ``torch.save``-d: ``torch.load(path, weights_only=False)`` or
:func:`load_exported` gives it back, for ``eval()`` and ``torch.inference_mode``, with no callback of lt-lightning.
Beside it in the archive, the report as JSON (:func:`read_export_report` reads it without unpickling any code).

>>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
>>> masks = Masks({n: torch.rand_like(p) < 0.05 for n, p in net.named_parameters() if n.endswith("weight")})
>>> exported, report = export_ticket(net, Ticket.from_state(net.state_dict(), masks), batch_sizes=(1,), reps=2,
...                                  force_sparse=True)
>>> type(exported[0]).__name__, report.layers[0].swapped
('SparseLinear', True)
>>> x = torch.randn(3, 64)
>>> with torch.inference_mode():
...     torch.allclose(exported(x), report.reference(x), atol=1e-4, rtol=1e-4)
True
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import statistics
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_lightning.files import atomic_write
from lt_lightning.masks import Masks, pack_bits, unpack_bits
from lt_lightning.ticket import Ticket

FORMAT = "lt-lightning-export/1"
BATCH_SIZES = (1, 64, 256)
DTYPES = {"float32": torch.float32, "float16": torch.float16}
TOLERANCE = 1e-4  # atol and rtol of the exported outputs against the masked dense model's (see the module docstring)
# A layer runs sparse only if its median sparse time is more than this fraction below its dense time at every batch
# size: a marginal win is within the noise of a shared machine (measured: swapped on such wins, Conv-2 at 20%
# density ran 0.86-0.94x of dense with 2 threads), and the whole-model check would undo it anyway.
MARGIN = 0.1
_REPORT_RECORD = "lt_export_report.json"
_FLOAT32_BYTES = 4


def _csr(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """``weight`` (2-D) as CSR with int32 indices where they fit (torch's CSR kernels take int32 or int64 only)."""
    csr = weight.detach().to(dtype).to_sparse_csr()
    index = torch.int32 if max(csr.values().numel(), *weight.shape) < 2**31 else torch.int64
    return torch.sparse_csr_tensor(csr.crow_indices().to(index), csr.col_indices().to(index), csr.values(),
                                   tuple(weight.shape))


def _product(weight: Tensor, bias: Tensor | None, columns: Tensor) -> Tensor:
    """``weight @ columns + bias[:, None]`` for a CSR ``weight``."""
    if weight.dtype != columns.dtype:  # float64 inputs, say: the kernels need one dtype
        weight, bias = weight.to(columns.dtype), None if bias is None else bias.to(columns.dtype)
    return torch.sparse.mm(weight, columns) if bias is None else torch.addmm(bias.unsqueeze(1), weight, columns)


def _tensor_bytes(tensor: Tensor) -> int:
    if tensor.layout == torch.sparse_csr:
        return sum(_tensor_bytes(t) for t in (tensor.crow_indices(), tensor.col_indices(), tensor.values()))
    return tensor.numel() * tensor.element_size()


def _index_dtype(bound: int) -> torch.dtype:
    """The smallest integer type holding ``0 .. bound`` (on disk: torch's kernels get int32 back when loaded)."""
    return next(t for t, top in ((torch.uint8, 2**8), (torch.int16, 2**15), (torch.int32, 2**31)) if bound < top) \
        if bound < 2**31 else torch.int64


def _pack(weight: Tensor, dtype: torch.dtype) -> dict[str, Any]:
    """``weight`` (dense or CSR) in its smallest stored form: ``binary`` (all kept values one magnitude: mask bits,
    sign bits, alpha), ``csr`` (values in ``dtype``, indices in the smallest integer type) or ``dense`` (in
    ``dtype``). :func:`_unpack` rebuilds it, float32, in the layout it had.

    >>> w = torch.tensor([[0.0, 0.5], [-0.5, 0.0]])
    >>> _pack(w, torch.float32)["form"], torch.equal(_unpack(_pack(w, torch.float32)), w)
    ('binary', True)
    """
    layout = "sparse_csr" if weight.layout == torch.sparse_csr else "strided"
    dense = weight.detach().cpu().to_dense().float()
    kept = dense != 0
    values = dense[kept]
    magnitudes = values.abs()
    head = {"layout": layout, "shape": list(dense.shape)}
    if values.numel() and bool((magnitudes == magnitudes[0]).all()):
        return {**head, "form": "binary", "mask": pack_bits(kept), "signs": pack_bits(values > 0),
                "alpha": float(magnitudes[0])}
    matrix = dense.reshape(dense.shape[0], -1) if dense.dim() > 1 else dense.reshape(1, -1)
    csr = matrix.to_sparse_csr()
    packed = {**head, "form": "csr", "values": csr.values().to(dtype),
              "crow": csr.crow_indices().to(_index_dtype(values.numel())),
              "col": csr.col_indices().to(_index_dtype(matrix.shape[1]))}
    if layout == "sparse_csr" or _stored_bytes(packed) < dense.numel() * torch.finfo(dtype).bits // 8:
        return packed
    return {**head, "form": "dense", "values": dense.to(dtype)}


def _stored_bytes(packed: Mapping[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in packed.values() if isinstance(v, Tensor))


def _unpack(packed: Mapping[str, Any]) -> Tensor:
    shape = tuple(packed["shape"])
    if packed["form"] == "dense":
        dense = packed["values"].float()
    elif packed["form"] == "binary":
        kept = unpack_bits(packed["mask"], shape)
        dense = torch.zeros(shape)
        signs = unpack_bits(packed["signs"], (int(kept.sum()),))
        dense[kept] = torch.where(signs, packed["alpha"], -packed["alpha"])
    else:
        rows = shape[0] if len(shape) > 1 else 1
        dense = torch.sparse_csr_tensor(packed["crow"].long(), packed["col"].long(), packed["values"].float(),
                                        (rows, math.prod(shape) // rows)).to_dense().reshape(shape)
    return _csr(dense, torch.float32) if packed["layout"] == "sparse_csr" else dense


class _PackedWeight(nn.Module):
    """A layer whose ``weight`` is pickled in its smallest stored form (:func:`_pack`, values in
    ``storage_dtype``) and rebuilt, float32 in the layout it had, when unpickled: smaller on disk, as fast as before
    in memory. Subclasses mix it into a layer class."""

    storage_dtype: str = "float32"

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        where = "_parameters" if isinstance(self._parameters.get("weight"), Tensor) else "_buffers"
        group = dict(state[where])
        weight = group["weight"]
        group["weight"] = None  # its place, so that state_dict keeps its order
        state[where] = group
        state["_packed_weight"] = (where, _pack(weight, DTYPES[self.storage_dtype]), bool(weight.requires_grad))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        where, packed, requires_grad = state.pop("_packed_weight")
        super().__setstate__(state)
        # On the device of the layer's other tensors (torch.load's map_location moved them), else on CPU.
        device = next((t.device for t in (*self._parameters.values(), *self._buffers.values()) if t is not None),
                      torch.device("cpu"))
        weight = _unpack(packed).to(device)
        getattr(self, where)["weight"] = nn.Parameter(weight, requires_grad) if where == "_parameters" else weight


class PackedLinear(_PackedWeight, nn.Linear):
    """A dense ``Linear`` (kept dense: not faster sparse) stored packed on disk."""


class PackedConv1d(_PackedWeight, nn.Conv1d):
    """A dense ``Conv1d`` stored packed on disk."""


class PackedConv2d(_PackedWeight, nn.Conv2d):
    """A dense ``Conv2d`` stored packed on disk."""


class PackedConv3d(_PackedWeight, nn.Conv3d):
    """A dense ``Conv3d`` stored packed on disk."""


_PACKED = {nn.Linear: PackedLinear, nn.Conv1d: PackedConv1d, nn.Conv2d: PackedConv2d, nn.Conv3d: PackedConv3d}


class SparseLinear(_PackedWeight):
    """``Linear`` with its weight held as a CSR tensor: ``y = x W^T + b``.

    >>> dense = nn.Linear(6, 3); _ = dense.weight.data.mul_(torch.rand(3, 6) < 0.3)
    >>> sparse = SparseLinear.from_dense(dense)
    >>> x = torch.randn(2, 6)
    >>> torch.allclose(sparse(x), dense(x), atol=1e-6)
    True
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", _csr(weight, torch.float32))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_dense(cls, layer: nn.Linear) -> SparseLinear:
        return cls(layer.weight, layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and x.shape[0] == 1 and x.dtype == self.weight.dtype:
            # One sample: the matrix-vector kernel, and no reshaping, take a third of the general path's time.
            row = x[0]
            return (torch.mv(self.weight, row) if self.bias is None else torch.addmv(self.bias, self.weight, row))[None]
        flat = x.reshape(-1, self.in_features)
        out = _product(self.weight, self.bias, flat.T).T
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None},"
                f" kept={self.weight.values().numel()}, values={str(self.weight.dtype).removeprefix('torch.')}")


class SparseConv2d(_PackedWeight):
    """``Conv2d`` (``groups=1``, zero padding) as ``unfold`` and a CSR product of the weight's ``out x in*kh*kw``
    matrix: exact, and faster than the dense convolution only where the unfolding costs less than what the
    sparsity saves (rarely on CPU: measured).

    >>> dense = nn.Conv2d(2, 3, 3, padding=1, stride=2); _ = dense.weight.data.mul_(torch.rand(3, 2, 3, 3) < 0.3)
    >>> x = torch.randn(2, 2, 7, 7)
    >>> torch.allclose(SparseConv2d.from_dense(dense)(x), dense(x), atol=1e-6)
    True
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        problem = self.unsupported(conv)
        if problem:
            raise ValueError(f"SparseConv2d cannot hold this convolution: {problem}.")
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.dilation = tuple(conv.padding), tuple(conv.dilation)  # type: ignore[arg-type]
        self.register_buffer("weight", _csr(conv.weight.reshape(conv.out_channels, -1), torch.float32))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float().clone())

    @classmethod
    def from_dense(cls, conv: nn.Conv2d) -> SparseConv2d:
        return cls(conv)

    @staticmethod
    def unsupported(conv: nn.Conv2d) -> str | None:
        """Why ``conv`` has no exact sparse form here, or ``None``."""
        if conv.groups != 1:
            return f"groups={conv.groups} (only 1)"
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            return f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} (only numeric zero padding)"
        return None

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        out_h, out_w = ((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
                        zip((height, width), self.padding, self.dilation, self.kernel_size, self.stride))
        columns = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # batch, in*kh*kw, L
        columns = columns.transpose(0, 1).reshape(columns.shape[1], -1)
        out = _product(self.weight, self.bias, columns)  # out, batch*L
        # Contiguous as a convolution's output is: the next layer, handed the transposed view, ran slower (measured),
        # and this copy belongs in this layer's measured time.
        return out.reshape(self.out_channels, batch, out_h, out_w).transpose(0, 1).contiguous()


_SPARSE_FORMS: dict[type[nn.Module], Any] = {nn.Linear: SparseLinear, nn.Conv2d: SparseConv2d}


# ---------------------------------------------------------------------------------------------- measuring
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(calls: Sequence[Callable[[], Any]], reps: int, warmup: int = 1,
                        device: torch.device | str = "cpu") -> list[float]:
    """The median time in seconds of each of ``calls`` over ``reps`` repetitions, run interleaved (one of each per
    repetition, the order reversed every other one) so that a slower moment of the machine hits all alike.

    >>> fast, slow = interleaved_medians([lambda: None, lambda: time.sleep(0.002)], reps=3)
    >>> fast < slow
    True
    """
    device = torch.device(device)
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for rep in range(reps):
        for i in (range(len(calls)) if rep % 2 == 0 else reversed(range(len(calls)))):
            _synchronize(device)
            start = time.perf_counter()
            calls[i]()
            _synchronize(device)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def not_faster(dense_seconds: Mapping[int, float], other_seconds: Mapping[int, float], margin: float) -> str | None:
    """Why ``other`` does not beat ``dense`` by ``margin`` (a fraction of the dense time) at every batch size timed
    (the first one where it does not), or ``None`` if it does.

    >>> not_faster({1: 10e-6, 64: 100e-6}, {1: 8e-6, 64: 95e-6}, MARGIN)
    'not faster by the margin (10%) at batch 64: 95.0 us vs 100.0 us dense (1.05x)'
    >>> not_faster({1: 10e-6}, {1: 8e-6}, MARGIN) is None
    True
    """
    for b, dense in dense_seconds.items():
        other = other_seconds[b]
        if other >= dense * (1 - margin):
            return (f"not faster by the margin ({margin:.0%}) at batch {b}: {1e6 * other:,.1f} us vs"
                    f" {1e6 * dense:,.1f} us dense ({dense / other:.2f}x)")
    return None


# ---------------------------------------------------------------------------------------------- the report
@dataclass
class LayerExport:
    """One prunable layer: its density; bytes in memory and on disk (its weight as stored, and its bias) against
    dense float32; measured latency dense and sparse (seconds per batch size; a batch size absent was not timed);
    whether it was swapped for its sparse form, and why."""

    name: str
    kind: str
    shape: list[int]
    density: float
    swapped: bool
    reason: str
    memory_bytes: int
    disk_bytes: int
    dense_bytes: int
    stored_as: str  # the weight's form on disk: "binary", "csr" or "dense"
    dense_seconds: dict[int, float] = field(default_factory=dict)
    sparse_seconds: dict[int, float] = field(default_factory=dict)


@dataclass
class ExportReport:
    """What an export saves: per layer (:class:`LayerExport`) and for the model, bytes in memory and on disk
    against the dense float32 model, and latency against the masked dense model per batch size (median of
    interleaved repetitions, seconds)."""

    layers: list[LayerExport]
    density: float
    dtype: str
    device: str
    threads: int
    batch_sizes: list[int]
    reps: int
    force_sparse: bool
    input_shape: list[int]
    memory_bytes: int
    dense_memory_bytes: int
    disk_bytes: int
    dense_disk_bytes: int
    dense_seconds: dict[int, float]
    exported_seconds: dict[int, float]
    torch_version: str = torch.__version__
    binary: dict[str, Any] | None = None  # a biprop ticket: its packed size
    reference: Any = field(default=None, repr=False, compare=False)  # the masked dense module (not saved)

    def swapped(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.swapped]

    def speedup(self, batch_size: int) -> float:
        """Dense time over exported time at ``batch_size`` (above 1: the export is faster)."""
        return self.dense_seconds[batch_size] / self.exported_seconds[batch_size]

    def statement(self) -> str:
        """One line on what runs sparse, or the clear statement that no layer is faster sparse at this density, so
        that the export saves disk size only (which it states)."""
        if self.swapped():
            return (f"{len(self.swapped())} of {len(self.layers)} prunable layers run sparse: {self.swapped()};"
                    " the others run dense (masked weights, stored packed).")
        return (f"no layer is faster sparse at density {self.density:.4g} on {self.device} ({self.threads}"
                f" thread(s)) at batch sizes {self.batch_sizes}: every layer runs dense, as fast as the masked dense"
                f" model and as large in memory ({self.memory_bytes:,} bytes vs {self.dense_memory_bytes:,}); the"
                f" saving is disk size only: {self.disk_bytes:,} bytes vs {self.dense_disk_bytes:,} dense float32"
                f" ({self.dense_disk_bytes / self.disk_bytes:.2f}x smaller, masked weights stored packed, values"
                f" {self.dtype}). force_sparse (--force-sparse) swaps them anyway, for a study.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reference")
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportReport:
        data = {k: v for k, v in data.items() if k != "format"}
        keyed = lambda d: {int(k): v for k, v in d.items()}  # noqa: E731  # JSON keys are strings
        layers = [LayerExport(**{**layer, "dense_seconds": keyed(layer["dense_seconds"]),
                                 "sparse_seconds": keyed(layer["sparse_seconds"])}) for layer in data["layers"]]
        return cls(**{**data, "layers": layers, "dense_seconds": keyed(data["dense_seconds"]),
                      "exported_seconds": keyed(data["exported_seconds"])})

    def table(self) -> str:
        """The report as text: per layer, then the model."""
        sizes = self.batch_sizes
        width = max([len("layer"), *(len(layer.name) for layer in self.layers)])
        head = (f"{'layer':<{width}}  {'kind':<7} {'density':>7} {'memory':>11} {'disk':>11} {'dense f32':>11}"
                f" {'stored':>6}" + "".join(f" {f'b={b} us dense/sparse':>21}" for b in sizes) + "  runs: why")
        lines = [f"exported: density {self.density:.4g}; values stored {self.dtype}, float32 in memory; CSR indices"
                 f" int32 in memory, the smallest integer type on disk; {self.device}, {self.threads} thread(s),"
                 f" torch {self.torch_version}; input {self.input_shape}; latency: median of {self.reps} interleaved"
                 " repetitions", head]
        for layer in self.layers:
            times = "".join(f" {_pair(layer.dense_seconds.get(b), layer.sparse_seconds.get(b)):>21}" for b in sizes)
            lines.append(f"{layer.name:<{width}}  {layer.kind:<7} {layer.density:>7.4f} {layer.memory_bytes:>11,}"
                         f" {layer.disk_bytes:>11,} {layer.dense_bytes:>11,} {layer.stored_as:>6}{times}"
                         f"  {'sparse' if layer.swapped else 'dense'}: {layer.reason}")
        lines += [f"model in memory: {self.memory_bytes:,} bytes vs {self.dense_memory_bytes:,} dense float32"
                  f" ({self.dense_memory_bytes / self.memory_bytes:.2f}x smaller)",
                  f"model on disk: {self.disk_bytes:,} bytes vs {self.dense_disk_bytes:,} dense float32"
                  f" ({self.dense_disk_bytes / self.disk_bytes:.2f}x smaller)"]
        if self.binary is not None:
            lines.append(f"binary ticket: {self.binary['packed_bytes']:,} bytes packed (mask and sign bits, one"
                         f" float32 alpha per layer); the export stores its prunable weights the same way on disk:"
                         f" {self.binary['bits_per_weight']:.2f} bits per prunable weight, and holds alpha * sign as"
                         " float32 in memory, as torch's kernels need")
        lines += [f"latency at batch {b}: exported {1e6 * self.exported_seconds[b]:,.1f} us vs masked dense"
                  f" {1e6 * self.dense_seconds[b]:,.1f} us ({self.speedup(b):.2f}x)" for b in sizes]
        lines.append(self.statement())
        return "\n".join(lines)


def _pair(dense: float | None, sparse: float | None) -> str:
    return "/".join(f"{1e6 * s:,.1f}" if s is not None else "-" for s in (dense, sparse))


# ---------------------------------------------------------------------------------------------- the export
def stored_bytes(ticket: Ticket) -> dict[str, int]:
    """What an export of ``ticket`` stores on disk, without building its module: the bytes of its tensors (the
    archive's few kilobytes of pickle aside) with the values in each dtype of :data:`DTYPES` (masked weights packed
    as :func:`export_ticket` packs them, other entries as they are), and ``"dense"``: the same entries as dense
    float32. Whether it runs faster, only an export measures.

    >>> w = torch.zeros(100, 100); w[0, :50] = torch.randn(50)
    >>> stored_bytes(Ticket(Masks({"w": w != 0}), {"w": w, "b": torch.zeros(100)}))
    {'float32': 751, 'float16': 651, 'dense': 40400}
    """
    masked = {d: sum(_stored_bytes(_pack(ticket.state_dict[name] * mask, t)) for name, mask in ticket.masks.items())
              for d, t in DTYPES.items()}
    others = sum(_tensor_bytes(v) for k, v in ticket.state_dict.items() if k not in ticket.masks)
    dense = _FLOAT32_BYTES * sum(v.numel() for v in ticket.state_dict.values() if v.is_floating_point())
    return {**{d: b + others for d, b in masked.items()}, "dense": dense}


def lightning_network(module: nn.Module) -> str | None:
    """For a LightningModule whose parameters all live in one child (``Classifier.model``), that child's name: the
    plain network to export, which loads without Lightning. ``None`` for anything else (exported whole).

    >>> lightning_network(nn.Sequential(nn.Linear(2, 2))) is None
    True
    """
    if "LightningModule" not in {cls.__name__ for cls in type(module).__mro__}:
        return None
    owners = {name.split(".", 1)[0] for name, _ in module.named_parameters()}
    return owners.pop() if len(owners) == 1 and owners <= set(dict(module.named_children())) else None


def _input_shape(net: nn.Module, root: nn.Module, given: Sequence[int] | None) -> tuple[int, ...]:
    if given is not None:
        if not given or any(not isinstance(s, int) or s < 1 for s in given):
            raise ValueError(f"input_shape={list(given)!r} is not allowed: one sample's shape, positive integers"
                             " (e.g. 1 28 28), without the batch dimension.")
        return tuple(given)
    example = getattr(root, "example_input_array", None)
    if isinstance(example, Tensor) and example.dim() > 1:
        return tuple(example.shape[1:])
    first = next((m for m in net.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ValueError(f"cannot tell the input shape of {type(net).__name__} (its first layer is not a Linear and it"
                     " has no example_input_array): give input_shape= (--input-shape), one sample's shape such as"
                     " 3 32 32.")


def _layer_inputs(net: nn.Module, names: Sequence[str], sample: Tensor) -> dict[str, tuple[int, ...]]:
    """The per-sample input shape of each named module on one forward of ``sample`` (batch 1)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        return lambda _module, args: shapes.setdefault(name, tuple(args[0].shape[1:])) and None

    hooks = [net.get_submodule(name).register_forward_pre_hook(record(name)) for name in names]
    try:
        with torch.inference_mode():
            net(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _dense_bytes(module: nn.Module) -> int:
    return _FLOAT32_BYTES * sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())


def _state_bytes(module: nn.Module) -> int:
    return sum(_tensor_bytes(t) for t in module.state_dict().values())


def _serialized(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module, buffer)
    return buffer.getvalue()


def export_ticket(module: nn.Module, ticket: Ticket, *, submodule: str | None = None,
                  input_shape: Sequence[int] | None = None, batch_sizes: Sequence[int] = BATCH_SIZES,
                  dtype: str = "float32", device: str | torch.device = "cpu", force_sparse: bool = False,
                  reps: int = 20, warmup: int = 2, binary: Any = None) -> tuple[nn.Module, ExportReport]:
    """``module`` (a copy; the original is left alone) with ``ticket`` applied, each prunable layer swapped for its
    sparse form where that is measured faster at every batch size of ``batch_sizes`` on ``device``, every weight
    stored packed; and the report. The module returned is the one :func:`save_exported` writes, as it loads back.

    ``submodule``: export only that child (e.g. ``"model"`` of a LightningModule: see :func:`lightning_network`),
    the ticket's names under it. ``input_shape``: one sample's shape (default: ``example_input_array``'s, or the
    first Linear's ``in_features``). ``dtype``: the stored values, ``"float32"`` or ``"float16"`` (float32 in
    memory either way). ``force_sparse``: swap every layer that has a sparse form, faster or not (for studies).
    ``reps``/``warmup``: timed repetitions per measurement (a layer slower at one batch size is not timed at the
    later ones unless forced). ``binary``: the :class:`~lt_lightning.supermask.binary.BinaryTicket` the ticket came
    from, for its packed size. ``ValueError`` for a ticket of another architecture (naming the entry), a bad
    argument, or a submodule the ticket does not reach.
    """
    _check_arguments(batch_sizes, dtype, reps, warmup)
    device = torch.device(device)
    root = copy.deepcopy(module)
    ticket.apply(root)  # names and shapes checked here
    net, masks = _select(root, ticket.masks, submodule)
    net.eval().to(device)
    reference = copy.deepcopy(net)
    shape = _input_shape(net, root, input_shape)
    layer_names = {name.rpartition(".")[0]: name for name in masks}
    seen = _layer_inputs(net, list(layer_names), torch.randn(1, *shape, device=device))
    layers = [_export_layer(net, path, name, masks[name], seen.get(path), dtype, device, batch_sizes, force_sparse,
                            reps, warmup) for path, name in layer_names.items()]
    inputs = {b: torch.randn(b, *shape, device=device) for b in batch_sizes}
    kept = copy.deepcopy(net)  # before the whole-model check may fall back (its swapped layers are net's)
    net, stored, model_times = _as_loaded(net, reference, inputs, reps, warmup, device)
    slower = not_faster({b: t[0] for b, t in model_times.items()}, {b: t[1] for b, t in model_times.items()}, 0)
    if slower and not force_sparse and any(layer.swapped for layer in layers):
        _fall_back(kept, reference, layers, list(layer_names), f"the exported model with the layers measured faster"
                   f" sparse was {slower.removeprefix('not faster by the margin (0%) ')}; all kept dense", dtype)
        net, stored, model_times = _as_loaded(kept, reference, inputs, reps, warmup, device)
    for layer, path in zip(layers, layer_names):
        layer.memory_bytes = _state_bytes(net.get_submodule(path))
    packed = None
    if binary is not None:
        weight_bytes = sum(layer.disk_bytes - _bias_bytes(net.get_submodule(path))
                           for layer, path in zip(layers, layer_names))
        packed = {"packed_bytes": binary.packed_bytes(), "dense_bytes": binary.dense_bytes(),
                  "bits_per_weight": 8 * weight_bytes / masks.numel()}
    report = ExportReport(
        layers=layers, density=masks.density(), dtype=dtype, device=str(device), threads=torch.get_num_threads(),
        batch_sizes=list(batch_sizes), reps=reps, force_sparse=force_sparse, input_shape=list(shape),
        memory_bytes=_state_bytes(net), dense_memory_bytes=_dense_bytes(reference), disk_bytes=len(stored),
        dense_disk_bytes=len(_serialized(reference)), dense_seconds={b: t[0] for b, t in model_times.items()},
        exported_seconds={b: t[1] for b, t in model_times.items()}, binary=packed, reference=reference)
    return net, report


def _as_loaded(net: nn.Module, reference: nn.Module, inputs: Mapping[int, Tensor], reps: int, warmup: int,
               device: torch.device) -> tuple[nn.Module, bytes, dict[int, list[float]]]:
    """``net`` serialized and loaded back (as a user gets it), its bytes, and its and ``reference``'s median times
    per batch size (``[reference, net]``)."""
    stored = _serialized(net)
    net = torch.load(io.BytesIO(stored), map_location=device, weights_only=False).to(device)
    with torch.inference_mode():
        times = {b: interleaved_medians([lambda x=x: reference(x), lambda x=x: net(x)], reps, warmup, device)
                 for b, x in inputs.items()}
    return net, stored, times


def _bias_bytes(layer: nn.Module) -> int:
    return sum(_tensor_bytes(t) for n, t in layer.state_dict().items() if n != "weight")


def _check_arguments(batch_sizes: Sequence[int], dtype: str, reps: int, warmup: int) -> None:
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes={list(batch_sizes)!r} is not allowed: positive integers, e.g. 1 64 256.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; allowed: {list(DTYPES)}.")
    if not isinstance(reps, int) or reps < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"reps={reps!r}, warmup={warmup!r}: reps must be a positive integer and warmup >= 0.")


def _select(root: nn.Module, masks: Masks, submodule: str | None) -> tuple[nn.Module, Masks]:
    if not submodule:
        return root, masks
    try:
        net = root.get_submodule(submodule)
    except AttributeError as err:
        raise ValueError(f"submodule={submodule!r} is not a module of {type(root).__name__} ({err}).") from None
    prefix = submodule + "."
    outside = [n for n in masks if not n.startswith(prefix)]
    if outside:
        raise ValueError(f"the ticket masks {outside[:4]} outside submodule={submodule!r}: export the whole module.")
    return net, Masks({n[len(prefix):]: m for n, m in masks.items()})


def _export_layer(net: nn.Module, path: str, name: str, mask: Tensor, sample_shape: tuple[int, ...] | None,
                  dtype: str, device: torch.device, batch_sizes: Sequence[int], force_sparse: bool, reps: int,
                  warmup: int) -> LayerExport:
    """Measure one masked layer dense and sparse; swap it in ``net`` for its sparse form if that is faster at every
    batch size (or ``force_sparse``), else give it packed storage."""
    layer = net.get_submodule(path)
    form = _SPARSE_FORMS.get(type(layer))
    done = LayerExport(name=name, kind=type(layer).__name__, shape=list(mask.shape),
                       density=int(mask.sum()) / max(mask.numel(), 1), swapped=False, reason="", memory_bytes=0,
                       disk_bytes=_state_bytes(layer), dense_bytes=_dense_bytes(layer), stored_as="dense")
    if form is None or name.rpartition(".")[2] != "weight":
        problem = f"no sparse form for {type(layer).__name__}'s {name.rpartition('.')[2]} here"
    elif not path:
        problem = "the module exported is this one layer (wrap it in a container)"
    elif sample_shape is None:
        problem = "not called on the example input"
    else:
        problem = SparseConv2d.unsupported(layer) if form is SparseConv2d else None  # type: ignore[arg-type]
    slower = None
    if problem is None:
        sparse = form.from_dense(layer).to(device)
        for b in batch_sizes:
            x = torch.randn(b, *sample_shape, device=device)  # type: ignore[misc]
            with torch.inference_mode():
                dense_t, sparse_t = interleaved_medians([lambda x=x: layer(x), lambda x=x: sparse(x)], reps, warmup,
                                                        device)
            done.dense_seconds[b], done.sparse_seconds[b] = dense_t, sparse_t
            slower = slower or not_faster({b: dense_t}, {b: sparse_t}, MARGIN)
            if slower and not force_sparse:  # one batch size where it loses decides: the later ones need not be timed
                break
        if slower is None or force_sparse:
            parent, _, attribute = path.rpartition(".")
            setattr(net.get_submodule(parent), attribute, sparse)
            layer, done.swapped = sparse, True
            done.reason = (f"forced (force_sparse), {slower}" if slower else
                           f"faster by the margin ({MARGIN:.0%}) at batch sizes {list(batch_sizes)}")
        else:
            done.reason = f"kept dense: {slower}"
    else:
        done.reason = problem
    _store_packed(layer, done, dtype)
    return done


def _store_packed(layer: nn.Module, done: LayerExport, dtype: str) -> None:
    """Give ``layer`` packed storage (in place) and record its stored form and bytes in ``done``."""
    if type(layer) in _PACKED:
        layer.__class__ = _PACKED[type(layer)]  # the same layer, stored packed
    if isinstance(layer, _PackedWeight):
        layer.storage_dtype = dtype
        packed = _pack(layer.weight, DTYPES[dtype])
        done.stored_as, done.disk_bytes = packed["form"], _stored_bytes(packed) + _bias_bytes(layer)


def _fall_back(net: nn.Module, reference: nn.Module, layers: Sequence[LayerExport], paths: Sequence[str],
               reason: str, dtype: str) -> None:
    """Put every swapped layer of ``net`` back to its masked dense form (from ``reference``), stored packed, with
    ``reason`` in its report entry."""
    for done, path in zip(layers, paths):
        if done.swapped:
            dense = copy.deepcopy(reference.get_submodule(path))
            parent, _, attribute = path.rpartition(".")
            setattr(net.get_submodule(parent), attribute, dense)
            done.swapped, done.reason = False, f"kept dense: {reason}"
            _store_packed(dense, done, dtype)


# ---------------------------------------------------------------------------------------------- files
def save_exported(module: nn.Module, report: ExportReport, path: str | os.PathLike) -> None:
    """Write the exported module (``torch.save`` of the module itself) with the report beside it in the archive,
    atomically: a failure leaves the old file or none."""
    buffer = io.BytesIO(_serialized(module))
    with zipfile.ZipFile(buffer, "a") as archive:
        folder = archive.namelist()[0].split("/", 1)[0]  # torch reads records under the archive's one folder
        archive.writestr(f"{folder}/{_REPORT_RECORD}", json.dumps(report.to_dict()))
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def read_export_report(path: str | os.PathLike) -> ExportReport | None:
    """The report stored in an exported file, read as JSON (no code runs); ``None`` if ``path`` is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            record = next((n for n in archive.namelist() if n.endswith("/" + _REPORT_RECORD)), None)
            data = json.loads(archive.read(record)) if record is not None else None
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return ExportReport.from_dict(data)


def load_exported(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> nn.Module:
    """The module written by :func:`save_exported`, in ``eval()`` mode. It is a pickled module, so this runs the
    pickle's code, as ``torch.load(path, weights_only=False)`` does: load only files you trust. ``ValueError`` for a
    file that is not an export."""
    if read_export_report(path) is None:
        raise ValueError(f"{os.fspath(path)!r} is not an exported ticket (no {_REPORT_RECORD} in it): write one with"
                         " `lt-lightning ticket export`.")
    module = torch.load(path, map_location=map_location, weights_only=False)
    return module.eval()

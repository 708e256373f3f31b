"""Size and latency of exported tickets (``lt_lightning.export``) against the dense model, on CPU.

For each model, density and thread count: random masks at that density on every Linear/Conv weight (the same
density in every layer, seeded; a sparse kernel's speed depends on how many entries are kept, not on which), a
ticket of them, and ``export_ticket`` of it, which swaps a layer for its CSR form only where that layer is measured
faster at every batch size. Then, timed here:

- **latency**: the dense (unmasked) model against the exported one at each batch size: ``--rounds`` rounds of
  ``export.interleaved_medians`` (``--reps`` repetitions each, one of each model per repetition, the order reversed
  every other one); the table gives the median over rounds of dense/exported time (above 1: the export is faster);
- **size**: the exported file's bytes (``save_exported``: the module and its report) against the dense float32
  model ``torch.save``-d, with values stored float32 and float16 (float16 changes the bytes on disk only: the
  module runs float32, as torch's CPU CSR kernels need);
- which layers run sparse.

Models: ``lenet_300_100`` (784-300-100-10) and ``conv2`` (Conv-2 on 1x28x28: two 3x3 convolutions of 64 channels,
then FC 12544-256-256-10). Inputs: standard-normal, batch sizes ``--batch-sizes``. Each (model, threads) is one
invocation's work at most, its results cached in ``--cache`` (JSON), so that a long run can be split in chunks:

    python benchmarks/ticket_speed.py --models lenet_300_100      # about 1 minute on 2 CPU cores
    python benchmarks/ticket_speed.py --models conv2 --threads 1  # about 3 minutes
    python benchmarks/ticket_speed.py --models conv2 --threads 2
    python benchmarks/ticket_speed.py --table                     # the Markdown table of everything cached
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from lt_lightning.experiments.configs import quiet_console
from lt_lightning.export import export_ticket, interleaved_medians, save_exported
from lt_lightning.masks import Masks, select_parameters
from lt_lightning.ticket import Ticket
from lt_lightning.zoo.models import build_model

DENSITIES = (0.2, 0.05, 0.02, 0.01)
MODELS = {
    "lenet_300_100": ({}, (784,)),
    "conv2": ({"in_channels": 1, "image_size": 28}, (1, 28, 28)),
}
CACHE = Path(tempfile.gettempdir()) / "lt_ticket_speed.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_ticket(model: nn.Module, density: float) -> Ticket:
    generator = torch.Generator().manual_seed(1)
    params = dict(model.named_parameters())
    masks = Masks({n: torch.rand(params[n].shape, generator=generator) < density for n in select_parameters(model)})
    return Ticket.from_state(model.state_dict(), masks)


def file_bytes(module: nn.Module, report, dtype: str) -> int:
    """Bytes of the export file with values stored in ``dtype`` (the same module: only its storage changes)."""
    for layer in module.modules():
        if hasattr(layer, "storage_dtype"):
            layer.storage_dtype = dtype
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ticket.pt")
        save_exported(module, report, path)
        return os.path.getsize(path)


def measure(name: str, density: float, batch_sizes: list[int], reps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    kwargs, shape = MODELS[name]
    dense = build_model(name, **kwargs).eval()
    exported, report = export_ticket(dense, make_ticket(dense, density), input_shape=shape, batch_sizes=batch_sizes,
                                     reps=reps)
    buffer = io.BytesIO()
    torch.save(dense, buffer)
    sizes = {dtype: file_bytes(exported, report, dtype) for dtype in ("float32", "float16")}
    inputs = {b: torch.randn(b, *shape) for b in batch_sizes}
    ratios: dict[int, list[float]] = {b: [] for b in batch_sizes}
    dense_us: dict[int, list[float]] = {b: [] for b in batch_sizes}
    with torch.inference_mode():
        for _ in range(rounds):
            for b in batch_sizes:
                dense_t, exported_t = interleaved_medians([lambda b=b: dense(inputs[b]), lambda b=b: exported(inputs[b])],
                                                          reps)
                ratios[b].append(dense_t / exported_t)
                dense_us[b].append(1e6 * dense_t)
            x = inputs[batch_sizes[0]]
            torch.testing.assert_close(exported(x), report.reference(x), atol=1e-4, rtol=1e-4)
    return {"model": name, "density": density, "threads": torch.get_num_threads(), "batch_sizes": batch_sizes,
            "reps": reps, "rounds": rounds, "dense_bytes": len(buffer.getvalue()), "file_bytes": sizes,
            "speedup": {b: statistics.median(r) for b, r in ratios.items()},
            "dense_us": {b: statistics.median(t) for b, t in dense_us.items()},
            "swapped": report.swapped(), "layers": [layer.name for layer in report.layers],
            "kinds": {layer.name: layer.kind for layer in report.layers},
            "cpu": cpu_model(), "torch": torch.__version__}


def load(cache: Path) -> list[dict]:
    return json.loads(cache.read_text()) if cache.exists() else []


def table(results: list[dict]) -> str:
    if not results:
        return "nothing cached yet"
    machine = {(r["cpu"], r["torch"]) for r in results}
    lines = [f"Machine: {'; '.join(f'{cpu}, torch {version}' for cpu, version in sorted(machine))}, CPU. Random"
             f" masks at the density on every Linear/Conv weight; latency: median over {results[0]['rounds']} rounds"
             f" of {results[0]['reps']} interleaved repetitions, dense/exported (above 1: the export is faster);"
             " size: dense float32 file / exported file.", "",
             "| model | density | threads | size f32 | size f16 |"
             + "".join(f" speed b={b} |" for b in results[0]["batch_sizes"]) + " dense us b=1 | runs sparse |",
             "|---|---:|---:|---:|---:|" + "---:|" * (len(results[0]["batch_sizes"]) + 1) + "---|"]
    for r in sorted(results, key=lambda r: (list(MODELS).index(r["model"]), -r["density"], r["threads"])):
        sizes = "".join(f" {r['dense_bytes'] / r['file_bytes'][d]:.1f}x |" for d in ("float32", "float16"))
        speed = "".join(f" {r['speedup'][str(b)]:.2f}x |" for b in r["batch_sizes"])
        swapped = r["swapped"]
        runs = ("none (all dense)" if not swapped else
                f"{len(swapped)}/{len(r['layers'])}: {', '.join(n.removesuffix('.weight') for n in swapped)}")
        lines.append(f"| {r['model']} | {r['density']:.0%} | {r['threads']} |{sizes}{speed}"
                     f" {r['dense_us'][str(r['batch_sizes'][0])]:,.0f} | {runs} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[], choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch intra-op threads")
    parser.add_argument("--densities", nargs="+", type=float, default=list(DENSITIES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 256])
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions per round and in the export")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of repetitions (the median ratio is shown)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="results of earlier chunks (JSON)")
    parser.add_argument("--table", action="store_true", help="only print the table of what is cached")
    args = parser.parse_args()

    started = time.perf_counter()
    warnings.filterwarnings("ignore", ".*Sparse CSR tensor support is in beta.*")
    warnings.filterwarnings("ignore", ".*Sparse invariant checks are implicitly disabled.*")
    results = load(args.cache)
    for name in [] if args.table else args.models:
        for threads in args.threads:
            quiet_console(threads)
            for density in args.densities:
                results = [r for r in results if (r["model"], r["density"], r["threads"]) != (name, density, threads)]
                # JSON round trip now, so that fresh and cached results read alike (string keys).
                results.append(json.loads(json.dumps(measure(name, density, args.batch_sizes, args.reps,
                                                             args.rounds))))
                args.cache.write_text(json.dumps(results, indent=1))
                print(f"{name} density {density:g} threads {threads} done ({time.perf_counter() - started:.0f} s)",
                      flush=True)
    print(table(results))


if __name__ == "__main__":
    main()

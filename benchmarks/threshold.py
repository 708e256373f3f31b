"""Benchmark ``keep_top_k`` against the naive ``torch.cat`` + ``torch.kthvalue`` global threshold (CPU).

Scores mimic one round of iterative magnitude pruning on a transformer: 12 blocks of attention (4 d x d)
and MLP (d x 4d, 4d x d) weights plus their biases and norms (~100 small tensors), ``|randn|`` scores with
``--pruned`` of them already pruned (``-inf``), and k keeping half of the survivors.

Time: both methods (and one ``torch.sum`` pass over all scores, the unit "passes") alternate within one
process, ``--reps`` times each with the order swapped every repetition; the median is reported.

Memory: each method runs once in a fresh subprocess. After a tiny warm-up call, the scores' allocation
and ``malloc_trim(0)``, the kernel's peak-RSS counter is reset by writing ``5`` to ``/proc/self/clear_refs``;
the peak extra memory is ``VmHWM`` after the call minus ``VmRSS`` before it, so it includes the output
masks (1 byte per score) and every transient buffer. "overhead" subtracts the masks. Linux only (``/proc``).

    python benchmarks/threshold.py --sizes 1e6 1e7 1e8   # ~100 s on 2 cores; --threads 1 on a busy machine
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import subprocess
import sys
import time

import torch

from lt_lightning.pruning.threshold import keep_top_k

MB = 2**20


def layer_shapes(total: int, blocks: int = 12) -> list[tuple[int, ...]]:
    """Shapes of a `blocks`-deep transformer with about `total` parameters; the last one absorbs the rest."""
    d = max(4, int(math.sqrt(total / (12 * blocks))))
    block = [(d, d)] * 4 + [(4 * d, d), (d, 4 * d)] + [(d,)] * 4 + [(4 * d,), (d,)] + [(d,)] * 4
    shapes = block * blocks
    rest = total - sum(math.prod(s) for s in shapes)
    return shapes + [(rest,)] if rest > 0 else shapes


def make_scores(total: int, pruned: float) -> tuple[list[torch.Tensor], int]:
    """|randn| scores with a `pruned` fraction at -inf, and k keeping half of the rest."""
    gen = torch.Generator().manual_seed(0)
    scores = []
    for shape in layer_shapes(total):
        s = torch.randn(shape, generator=gen).abs_()
        s[torch.rand(shape, generator=gen) < pruned] = float("-inf")  # transient bounded by one layer
        scores.append(s)
    alive = sum(int(torch.isfinite(s).sum()) for s in scores)
    return scores, alive // 2


def naive(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    flat = torch.cat([s.reshape(-1) for s in scores])
    value = torch.kthvalue(flat, flat.numel() - k + 1).values  # k-th largest == (n - k + 1)-th smallest
    del flat
    return [s >= value for s in scores]


def sum_pass(scores: list[torch.Tensor], k: int) -> float:
    return sum(float(s.sum()) for s in scores)


METHODS = {"keep_top_k": keep_top_k, "cat+kthvalue": naive, "sum": sum_pass}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def child(method: str, total: int, pruned: float) -> None:
    """Print the peak extra bytes of one call, measured in this fresh process."""
    fn = METHODS[method]
    fn([torch.rand(100)], 10)  # load lazily-initialized code paths before measuring
    scores, k = make_scores(total, pruned)
    # Hand freed heap pages back first, or the call could reuse them without raising the peak.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    out = fn(scores, k)
    print(json.dumps({"peak_extra": _status("VmHWM") - before}))
    del out


def peak_extra(method: str, total: int, pruned: float, threads: int) -> int:
    cmd = [sys.executable, __file__, "--child", method, "--sizes", str(total), "--pruned", str(pruned)]
    cmd += ["--threads", str(threads)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["peak_extra"]


def timings(scores: list[torch.Tensor], k: int, reps: int) -> dict[str, float]:
    names = ["keep_top_k", "cat+kthvalue"]
    times: dict[str, list[float]] = {n: [] for n in [*names, "sum"]}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            METHODS[name](scores, k)
            times[name].append(time.perf_counter() - start)
        for _ in range(3):
            start = time.perf_counter()
            sum_pass(scores, k)
            times["sum"].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8], help="numbers of scores")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per method")
    parser.add_argument("--pruned", type=float, default=0.5, help="fraction of scores already at -inf")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, int(args.sizes[0]), args.pruned)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; time: median of {args.reps}")
    columns = ["scores", "tensors", "method", "time ms", "passes", "peak MB", "overhead MB"]
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, [7, 7, 13, 9, 7, 8, 12])))
    for total in map(int, args.sizes):
        scores, k = make_scores(total, args.pruned)
        ours, ref = keep_top_k(scores, k), naive(scores, k)
        # Exactly k, all at or above the threshold; `>=` also keeps every score tied with the k-th.
        assert sum(int(m.sum()) for m in ours) == k and all(torch.equal(a & b, a) for a, b in zip(ours, ref))
        surplus = sum(int(m.sum()) for m in ref) - k
        del ours, ref
        t = timings(scores, k, args.reps)
        print(f"{total:>7.0e} {len(scores):>7} {'sum (1 pass)':>13} {t['sum'] * 1e3:>9.1f} {1:>7.1f}   k={k}")
        for name in ["keep_top_k", "cat+kthvalue"]:
            peak = peak_extra(name, total, args.pruned, args.threads)
            over = (peak - total) / MB  # masks: 1 byte per score
            passes = t[name] / t["sum"]
            print(f"{'':>15} {name:>13} {t[name] * 1e3:>9.1f} {passes:>7.1f} {peak / MB:>8.1f} {over:>12.1f}")
        if surplus:
            print(f"{'':>15} (cat+kthvalue's >= keeps {surplus} scores beyond k: ties at the threshold)")
        del scores


if __name__ == "__main__":
    main()

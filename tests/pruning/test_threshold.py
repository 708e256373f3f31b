"""keep_top_k against the sort-based reference: concatenate, stable-sort descending, keep the first k."""

import random
import struct

import pytest
import torch

from lt_lightning.pruning import threshold
from lt_lightning.pruning.threshold import keep_top_k

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INTS = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def reference(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """The definition: the first k positions of a stable descending sort of all scores, compared by value."""
    wide = torch.float64 if any(s.is_floating_point() for s in scores) else torch.int64
    flat = torch.cat([s.reshape(-1).to(wide) for s in scores])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return [m.view(s.shape) for m, s in zip(keep.split([s.numel() for s in scores]), scores)]


def check(scores: list[torch.Tensor], k: int, chunk_size: int = threshold.CHUNK_SIZE) -> None:
    masks = keep_top_k(scores, k, chunk_size=chunk_size)
    assert len(masks) == len(scores)
    for got, want, s in zip(masks, reference(scores, k), scores):
        assert got.dtype == torch.bool and got.shape == s.shape and got.device == s.device
        assert torch.equal(got, want), f"k={k}, chunk_size={chunk_size}, dtypes={[t.dtype for t in scores]}"
    assert sum(int(m.sum()) for m in masks) == k


def random_scores(seed: int, dtypes: list[torch.dtype]) -> list[torch.Tensor]:
    """A few tensors of mixed sizes (empty and single-element included), distributions and dtypes."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(rng.randint(1, 6)):
        shape = rng.choice([(0,), (1,), (), (3, 0), (7,), (4, 5), (300,), (2, 3, 50)])
        dtype = rng.choice(dtypes)
        if dtype.is_floating_point:
            x = torch.randn(shape, generator=gen, dtype=torch.float64) * rng.choice([1.0, 1e-3, 1e4])
            if rng.random() < 0.3:  # pruned weights are marked -inf
                x[torch.rand(shape, generator=gen) < 0.4] = float("-inf")
            if rng.random() < 0.3:  # exact ties, both signs of zero included
                x = torch.randint(-2, 3, shape, generator=gen).to(torch.float64) * rng.choice([1.0, -0.0, 0.5])
        elif dtype == torch.bool:
            x = torch.rand(shape, generator=gen) < 0.5
        else:
            info = torch.iinfo(dtype)
            x = torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=gen)
        scores.append(x.to(dtype))
    return scores


def k_values(total: int, seed: int) -> set[int]:
    rng = random.Random(seed)
    return {k for k in (0, 1, total - 1, total, rng.randint(0, total), rng.randint(0, total)) if 0 <= k <= total}


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("chunk_size", [37, threshold.CHUNK_SIZE])
def test_matches_reference_mixed_floats(seed: int, chunk_size: int) -> None:
    dtypes = [FLOATS[seed % 4]] if seed < 8 else FLOATS  # one dtype at a time, then all mixed
    scores = random_scores(seed, dtypes)
    for k in k_values(sum(s.numel() for s in scores), seed):
        check(scores, k, chunk_size)


@pytest.mark.parametrize("seed", range(10))
def test_matches_reference_integers(seed: int) -> None:
    scores = random_scores(seed, INTS)
    for k in k_values(sum(s.numel() for s in scores), seed):
        check(scores, k, chunk_size=29)
    mixed = scores + random_scores(seed + 100, [torch.float32, torch.float16])  # ints meet floats: by value
    for k in k_values(sum(s.numel() for s in mixed), seed):
        check(mixed, k, chunk_size=29)


def test_integer_extremes() -> None:
    big = torch.tensor([torch.iinfo(torch.int64).max, torch.iinfo(torch.int64).min, -1, 0, 2**40, 2**40 + 1])
    scores = [big, torch.tensor([-128, 127, 0], dtype=torch.int8), torch.tensor([255, 0], dtype=torch.uint8)]
    for k in range(12):
        check(scores, k, chunk_size=2)


@pytest.mark.parametrize("chunk_size", [1, 8, threshold.CHUNK_SIZE])
def test_heavy_ties_keep_earliest(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    scores = [
        torch.randint(0, 3, (50,), generator=gen).float(),
        torch.full((3, 7), 1.0),
        torch.randint(0, 3, (40,), generator=gen).to(torch.float16),
        torch.ones(0),
        torch.full((9,), 2.0, dtype=torch.float64),
    ]
    assert sum(s.numel() for s in scores) == 120
    for k in (0, 1, 2, 8, 9, 10, 29, 30, 31, 60, 61, 89, 90, 119, 120):
        check(scores, k, chunk_size)
    constant = [torch.zeros(10), torch.zeros(5), torch.zeros(1)]
    for k in range(17):
        check(constant, k, chunk_size)


def test_signed_zeros_are_equal() -> None:
    # -0.0 == +0.0, so zeros of either sign are ties kept in tensor order, not -0.0 after +0.0.
    scores = [torch.tensor([-0.0, 0.0, -0.0, 1.0]), torch.tensor([0.0, -0.0], dtype=torch.float64)]
    for k in range(7):
        check(scores, k, chunk_size=2)
    assert keep_top_k(scores, 2)[0].tolist() == [True, False, False, True]


def test_neg_inf_sorts_last() -> None:
    inf = float("inf")
    scores = [torch.tensor([-inf, 1.0, -inf, -3.0]), torch.tensor([-inf, inf, -1e30]), torch.full((4,), -inf)]
    for k in range(12):
        check(scores, k, chunk_size=3)
    assert keep_top_k(scores, 4)[2].tolist() == [False] * 4


def test_extreme_magnitudes() -> None:
    tiny = struct.unpack("<f", struct.pack("<I", 1))[0]  # smallest float32 subnormal
    values = [3.4e38, -3.4e38, 1e-38, -1e-38, tiny, -tiny, 0.0, -0.0, 1.0, 1.0 + 2**-23, 6e-8, 65504.0]
    scores = [torch.tensor(values), torch.tensor(values, dtype=torch.float64), torch.tensor(values).half()]
    for k in range(sum(s.numel() for s in scores) + 1):
        check(scores, k, chunk_size=5)


def test_float64_low_bits() -> None:
    # Values equal in their top 48 bits: only the last radix pass tells them apart.
    base = torch.tensor(1.0, dtype=torch.float64).view(torch.int64)
    x = (base + torch.tensor([5, 3, 9, 3, 0, 65535, 65536])).view(torch.float64)
    scores = [x, -x]
    for k in range(15):
        check(scores, k, chunk_size=3)


def test_shapes_devices_and_non_contiguous() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = [torch.randn(6, 8, generator=gen).t(), torch.tensor(0.5), torch.randn(3, 4, 5, generator=gen)[:, ::2]]
    assert not scores[0].is_contiguous() and not scores[2].is_contiguous()
    for k in (0, 7, 30, sum(s.numel() for s in scores)):
        check(scores, k, chunk_size=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_mixed_devices() -> None:
    scores = random_scores(3, FLOATS) + [torch.randn(1000)]
    on_gpu = [s.cuda() if i % 2 else s for i, s in enumerate(scores)]
    for k in k_values(sum(s.numel() for s in scores), 3):
        masks = keep_top_k(on_gpu, k, chunk_size=64)
        assert [m.device for m in masks] == [s.device for s in on_gpu]
        assert all(torch.equal(m.cpu(), r) for m, r in zip(masks, reference(scores, k)))


def test_empty_inputs() -> None:
    assert keep_top_k([], 0) == []
    masks = keep_top_k([torch.ones(0), torch.ones(2, 0)], 0)
    assert [m.shape for m in masks] == [torch.Size([0]), torch.Size([2, 0])]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nan_bits", ["plain", "inf_bin"])
def test_nan_raises_with_tensor_index(dtype: torch.dtype, nan_bits: str) -> None:
    nan = torch.tensor(float("nan"), dtype=dtype)
    if nan_bits == "inf_bin":  # a NaN whose top 16 bits equal those of +inf (smallest mantissa payload)
        ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
        nan = (torch.tensor(float("inf"), dtype=dtype).view(ints) + 1).view(dtype)
    assert bool(torch.isnan(nan))
    bad = torch.tensor([1.0, float("-inf"), 2.0], dtype=dtype)
    bad[1 if nan_bits == "plain" else 2] = nan
    scores = [torch.randn(10), torch.tensor([float("-inf")]), bad]
    for k in (0, 3, 14):
        with pytest.raises(ValueError, match=r"scores\[2\].*NaN"):
            keep_top_k(scores, k, chunk_size=4)


@pytest.mark.parametrize("k", [-1, 8, 100])
def test_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=rf"k={k}.*0 <= k <= 7"):
        keep_top_k([torch.randn(3), torch.randn(4)], k)


def test_never_concatenates(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = [torch.randn(100), torch.randn(7, 9)]
    want = reference(scores, 50)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("keep_top_k must not concatenate the scores")

    monkeypatch.setattr(torch, "cat", forbidden)
    monkeypatch.setattr(torch, "stack", forbidden)
    got = keep_top_k(scores, 50, chunk_size=16)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_small_tensors_share_batches() -> None:
    # Many biases packed into one batch; large tensors split across batches.
    flats = [torch.ones(3), torch.ones(5), torch.ones(20), torch.ones(2)]
    assert threshold._batches(flats, 8) == [[(0, 0, 3), (1, 0, 5)], [(2, 0, 8)], [(2, 8, 16)], [(2, 16, 20), (3, 0, 2)]]

"""TopK against the definition (the k largest values, ties to the earlier tensor and lower index), along a sequence of
optimizer-like steps that takes each of its paths: radix step, search from the last threshold, ties, small groups."""

import pytest
import torch

from lt_lightning.supermask import topk
from lt_lightning.supermask.topk import TopK


def reference(values, k):
    flat = torch.cat([v.reshape(-1) for v in values])
    keep = torch.zeros(flat.numel())
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = 1.0
    return [m.view(v.shape) for m, v in zip(keep.split([v.numel() for v in values]), values)]


def check(top, values, k):
    got = top.masks(values, k)
    assert sum(int(m.sum()) for m in got) == k
    for g, want, v in zip(got, reference(values, k), values):
        assert g.shape == v.shape and g.dtype == torch.float32
        assert torch.equal(g, want)


@pytest.mark.parametrize("sizes", [[120_000], [70_000, 9_000, 33]], ids=["layer", "group"])
def test_exact_along_training_like_steps(sizes, monkeypatch):
    paths = {"radix": 0, "search": 0}
    for name in paths:
        method = getattr(TopK, f"_{'from_last' if name == 'search' else name}")

        def counted(self, *args, name=name, method=method):
            paths[name] += 1
            return method(self, *args)

        monkeypatch.setattr(TopK, f"_{'from_last' if name == 'search' else name}", counted)
    generator = torch.Generator().manual_seed(0)
    scores = [torch.rand(n, generator=generator) * 2 - 1 for n in sizes]
    top = TopK()
    total = sum(sizes)
    for step in range(12):
        for s in scores:
            s.add_(torch.randn(s.shape, generator=generator).sign() * (1e-3 if step % 4 else 0.05))
        if step == 6:  # ties at the threshold: many equal values
            scores[0][:5000] = scores[0][7000]
        for k in (total // 2, total // 20 + 3):
            check(top, [s.abs() for s in scores], k)
    assert paths["radix"] >= 1 and paths["search"] >= 10


def test_ties_go_to_the_earlier_tensor_and_index():
    a, b = torch.zeros(3000), torch.zeros(3000)
    a[:5] = 2.0
    masks = TopK().masks([a, b], 4000)
    assert torch.equal(masks[0], torch.ones(3000)) and int(masks[1][:1000].sum()) == 1000 and int(masks[1].sum()) == 1000


def test_small_groups_and_edges():
    top = TopK()
    x = torch.tensor([[0.3, 0.1], [0.7, 0.2]])
    assert top.masks([x], 2)[0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert top.masks([x], 0)[0].sum() == 0 and top.masks([x], 4)[0].sum() == 4
    with pytest.raises(ValueError, match=r"k=5 is out of range: expected 0 <= k <= 4"):
        top.masks([x], 5)


def test_constant_values_fall_back_to_ties():
    values = torch.full((10_000,), 0.25)
    masks = TopK().masks([values], 1234)
    assert torch.equal(masks[0], (torch.arange(10_000) < 1234).float())


def test_blockwise_gather_matches_nonzero():
    flat = torch.rand(topk._BLOCKWISE + 77)
    band = ((flat > 0.3) & (flat < 0.3005)).float()
    band[-3:] = 1.0
    assert torch.equal(topk._gather(flat, band).sort().values, flat[band != 0].sort().values)

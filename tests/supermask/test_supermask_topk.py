"""TopK against the definition (the k largest values, ties to the earlier tensor and lower index), along sequences of
optimizer-like steps that take each of its paths: radix step, comparisons from the last threshold, bands gathered,
ties, one k over all tensors and one k per tensor."""

import pytest
import torch

from lt_lightning.supermask.topk import TopK


def reference(values, k):
    flat = torch.cat([v.reshape(-1) for v in values])
    keep = torch.zeros(flat.numel())
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = 1.0
    return [m.view(v.shape) for m, v in zip(keep.split([v.numel() for v in values]), values)]


def check(top, values, k, absolute=False):
    got = top.masks(values, k, absolute=absolute)
    compared = [v.abs() for v in values] if absolute else values
    want = reference(compared, k) if isinstance(k, int) else [reference([v], n)[0] for v, n in zip(compared, k)]
    for g, w, v in zip(got, want, values):
        assert g.shape == v.shape and g.dtype == torch.float32
        assert torch.equal(g, w)


def count_paths(monkeypatch):
    paths = {"_radix": 0, "_select_bands": 0, "_compare": 0}
    for name in paths:
        method = getattr(TopK, name)

        def counted(self, *args, name=name, method=method):
            paths[name] += 1
            return method(self, *args)

        monkeypatch.setattr(TopK, name, counted)
    return paths


@pytest.mark.parametrize("sizes, per_tensor", [([120_000], False), ([70_000, 9_000, 33], False),
                                                ([70_000, 9_000, 33, 1_000], True)],
                         ids=["one", "together", "each"])
def test_exact_along_training_like_steps(sizes, per_tensor, monkeypatch):
    paths = count_paths(monkeypatch)
    generator = torch.Generator().manual_seed(0)
    scores = [torch.rand(n, generator=generator) * 2 - 1 for n in sizes]
    tops = {0.5: TopK(), 0.05: TopK()}
    for step in range(12):
        for s in scores:
            s.add_(torch.randn(s.shape, generator=generator).sign() * (1e-3 if step % 4 else 0.05))
        if step == 6:  # ties at the threshold: many equal values
            scores[0][:5000] = scores[0][7000]
        for density, top in tops.items():
            ks = [max(1, int(density * n)) for n in sizes]
            check(top, scores, ks if per_tensor else sum(ks), absolute=True)
    check(tops[0.5], scores, [max(1, int(0.3 * n)) for n in sizes] if per_tensor else int(0.3 * sum(sizes)))
    groups = len(sizes) if per_tensor else 1
    # A radix step per group at the first call, and after the ties or the jump in k at most; otherwise searches.
    assert 2 * groups <= paths["_radix"] <= 2 * groups + 4 and paths["_select_bands"] >= 15
    assert paths["_compare"] < 25 * 4  # a few comparisons per selection, every tensor in each


def test_ties_go_to_the_earlier_tensor_and_index():
    a, b = torch.zeros(3000), torch.zeros(3000)
    a[:5] = 2.0
    masks = TopK().masks([a, b], 4000)
    assert torch.equal(masks[0], torch.ones(3000)) and int(masks[1][:1000].sum()) == 1000 and int(masks[1].sum()) == 1000


def test_edges_and_errors():
    top = TopK()
    x = torch.tensor([[0.3, 0.1], [0.7, 0.2]])
    assert top.masks([x], 2)[0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert top.masks([x], 0)[0].sum() == 0 and top.masks([x], 4)[0].sum() == 4
    big = torch.rand(20_000)
    check(top, [x, big, x], [0, 7_000, 4])  # nothing, a search, everything: in the same passes
    check(top, [x, big, x], [4, 6_999, 0])
    with pytest.raises(ValueError, match=r"k=5 is out of range: expected 0 <= k <= 4"):
        top.masks([x], 5)
    with pytest.raises(ValueError, match=r"gives 2 counts for 3 tensors"):
        top.masks([x, big, x], [1, 2])


def test_constant_values_fall_back_to_ties():
    values = torch.full((10_000,), 0.25)
    top = TopK()
    for _ in range(2):  # a radix step, then a search from its threshold
        masks = top.masks([values], 1234)
        assert torch.equal(masks[0], (torch.arange(10_000) < 1234).float())


def test_band_reaching_the_padded_last_block():
    """The k-th value moves into the last, partly filled block of 64 values, and k = all values pads nothing."""
    n = 10_000 + 17
    values = torch.linspace(0, 1, n)
    top = TopK()
    check(top, [values], 5000)  # radix step
    check(top, [values.flip(0).contiguous()], 5000)  # the band now spans whole blocks; then the last one
    bumped = values.clone()
    bumped[-10:] += 2.0
    for k in (n, 12, 9, 5000):
        check(top, [bumped], k)

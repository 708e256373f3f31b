"""lt_lightning.export: exported tickets compute what the masked dense model computes, load back with plain torch,
and swap a layer for its sparse form only where that was measured faster (or forced)."""

import pytest
import torch
from torch import nn

from lt_lightning.export import TOLERANCE, export_ticket, load_exported, read_export_report, save_exported
from lt_lightning.masks import Masks
from lt_lightning.ticket import Ticket


def _ticket(net: nn.Module, density: float, seed: int = 0) -> Ticket:
    g = torch.Generator().manual_seed(seed)
    masks = Masks({n: torch.rand(p.shape, generator=g) < density for n, p in net.named_parameters()
                   if n.endswith("weight")})
    return Ticket.from_state(net.state_dict(), masks)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))


@pytest.mark.parametrize("make, shape", [(_mlp, (64,)), (_conv, (1, 7, 7))])
@pytest.mark.parametrize("force", [True, False])
def test_outputs_equal_the_masked_dense_model(make, shape, force):
    net = make()
    exported, report = export_ticket(net, _ticket(net, 0.05), input_shape=shape, batch_sizes=(1, 4), reps=2,
                                     force_sparse=force)
    if force:
        assert report.swapped() == [layer.name for layer in report.layers]
    x = torch.randn(5, *shape)
    with torch.inference_mode():
        assert torch.allclose(exported.eval()(x), report.reference(x), atol=TOLERANCE, rtol=TOLERANCE)
    masked = make()
    _ticket(masked, 0.05).apply(masked)
    with torch.no_grad():
        assert torch.allclose(report.reference(x), masked(x), atol=1e-6)
    assert all(p.abs().sum() > 0 for p in net.parameters())  # the original module is left alone


def test_a_layer_runs_sparse_only_where_measured_faster():
    net = _mlp()
    _, report = export_ticket(net, _ticket(net, 0.5), input_shape=(64,), batch_sizes=(1, 8), reps=3)
    for layer in report.layers:
        faster = layer.sparse_seconds and all(layer.sparse_seconds[b] < layer.dense_seconds[b]
                                              for b in report.batch_sizes)
        assert layer.swapped == bool(faster), layer
        assert layer.reason
    assert report.statement()


def test_saved_export_loads_with_plain_torch_and_states_its_saving(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))  # LeNet
    exported, report = export_ticket(net, _ticket(net, 0.02), input_shape=(784,), batch_sizes=(1,), reps=2,
                                     force_sparse=True, dtype="float16")
    path = tmp_path / "ticket.pt"
    save_exported(exported, report, path)
    loaded = torch.load(path, weights_only=False).eval()
    x = torch.randn(3, 784)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), exported(x), atol=TOLERANCE, rtol=TOLERANCE)
        assert torch.allclose(load_exported(path)(x), exported(x), atol=TOLERANCE, rtol=TOLERANCE)
    again = read_export_report(path)
    assert again is not None and again.swapped() == report.swapped()
    assert report.disk_bytes * 8 < report.dense_disk_bytes  # LeNet at 2% density, float16 values: the 8x
    assert "smaller" in report.table()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporary left


def test_bad_input_is_refused(tmp_path):
    net = _mlp()
    other = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.raises(ValueError):
        export_ticket(other, _ticket(net, 0.1), input_shape=(64,), batch_sizes=(1,), reps=1)
    with pytest.raises(ValueError, match="dtype"):
        export_ticket(net, _ticket(net, 0.1), input_shape=(64,), dtype="int8")
    with pytest.raises(ValueError, match="batch_sizes"):
        export_ticket(net, _ticket(net, 0.1), input_shape=(64,), batch_sizes=(0,))
    (tmp_path / "plain.pt").write_bytes(b"not an export")
    with pytest.raises(ValueError, match="not an exported ticket"):
        load_exported(tmp_path / "plain.pt")

"""lt_lightning.export: exported tickets compute what the masked dense model computes, load back with plain torch,
and swap a layer for its sparse form only where that was measured faster (or forced)."""

import os

import pytest
import torch
from conftest import digits_model, make_trainer
from torch import nn

from lt_lightning import SupermaskCallback
from lt_lightning.cli import main as cli
from lt_lightning.export import (
    MARGIN,
    TOLERANCE,
    _fall_back,
    export_ticket,
    load_exported,
    not_faster,
    read_export_report,
    save_exported,
    stored_bytes,
)
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
        faster = layer.sparse_seconds and not_faster(layer.dense_seconds, layer.sparse_seconds, MARGIN) is None
        if layer.swapped:  # a layer faster by the margin may still have gone back dense in the whole-model check
            assert faster, layer
        assert layer.reason
    assert report.statement()


def test_a_layer_not_faster_by_the_margin_stays_dense_with_the_reason():
    torch.manual_seed(0)
    # Every weight kept: a CSR product of a full matrix is never faster than the dense one.
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64))
    exported, report = export_ticket(net, _ticket(net, 1.0), input_shape=(256,), batch_sizes=(1, 16), reps=3)
    assert report.swapped() == [] and not any(type(m).__name__.startswith("Sparse") for m in exported.modules())
    for layer in report.layers:
        assert layer.reason.startswith(f"kept dense: not faster by the margin ({MARGIN:.0%}) at batch "), layer
    assert report.statement().startswith("no layer is faster sparse")
    # The decision itself, on given times: 5% faster is within the margin, 20% faster is not.
    assert not_faster({1: 1.0, 64: 2.0}, {1: 0.8, 64: 1.9}, MARGIN).startswith("not faster by the margin (10%) at batch 64")
    assert not_faster({1: 1.0, 64: 2.0}, {1: 0.8, 64: 1.6}, MARGIN) is None
    assert not_faster({1: 1.0}, {1: 1.0}, 0) is not None


def test_the_whole_model_check_falls_back_to_dense_layers():
    net = _mlp()
    exported, report = export_ticket(net, _ticket(net, 0.05), input_shape=(64,), batch_sizes=(1,), reps=1,
                                     force_sparse=True)
    assert report.swapped() == [layer.name for layer in report.layers]
    paths = [layer.name.rpartition(".")[0] for layer in report.layers]
    _fall_back(exported, report.reference, report.layers, paths, "the model was slower", "float32")
    assert report.swapped() == [] and all(layer.reason == "kept dense: the model was slower" for layer in report.layers)
    assert [type(exported.get_submodule(p)).__name__ for p in paths] == ["PackedLinear", "PackedLinear"]
    x = torch.randn(5, 64)
    with torch.inference_mode():
        assert torch.allclose(exported(x), report.reference(x), atol=TOLERANCE, rtol=TOLERANCE)


def test_when_no_layer_is_faster_the_statement_says_the_saving_is_disk_size_only():
    torch.manual_seed(0)
    # Conv1d has no sparse form: no layer can run sparse, whatever the timings.
    net = nn.Sequential(nn.Conv1d(2, 16, 3), nn.ReLU(), nn.Conv1d(16, 16, 3))
    _, report = export_ticket(net, _ticket(net, 0.05), input_shape=(2, 20), batch_sizes=(1, 4), reps=1)
    assert report.swapped() == []
    statement = report.statement()
    assert statement.startswith("no layer is faster sparse") and "batch sizes [1, 4]" in statement
    assert "disk size only" in statement and f"{report.disk_bytes:,} bytes vs {report.dense_disk_bytes:,}" in statement
    assert report.disk_bytes < report.dense_disk_bytes and report.memory_bytes >= report.dense_memory_bytes
    assert statement in report.table()
    forced = export_ticket(_mlp(), _ticket(_mlp(), 0.05), input_shape=(64,), batch_sizes=(1,), reps=1,
                           force_sparse=True)[1].statement()
    assert "run sparse" in forced and "no layer" not in forced


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


def test_ticket_export_of_a_biprop_ticket_computes_what_the_supermask_network_computes(tmp_path, capsys):
    from lt_lightning.zoo import DigitsDataModule

    model = digits_model(lr=0.05)
    callback = SupermaskCallback(density=0.25, method="biprop", weight_init="kaiming_normal")
    make_trainer(tmp_path, [callback], max_epochs=1).fit(model, DigitsDataModule(batch_size=64, seed=0))
    folder = os.path.join(tmp_path, "run", "version_0", "tickets")
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  class_path: lt_lightning.zoo.Classifier\n  init_args:\n    model: mlp\n"
                      "    model_kwargs: {in_features: 64, hidden: [32, 16], num_classes: 10}\n")
    out = tmp_path / "exported.pt"
    assert cli(["ticket", "export", os.path.join(folder, "supermask_binary.pt"), "--config", str(config),
                "--out", str(out), "--batch-sizes", "1", "8"]) == 0
    printed = capsys.readouterr().out
    report = read_export_report(out)
    assert report.binary is not None and "binary ticket:" in printed and report.statement() in printed
    # mask bits, sign bits of the kept quarter, one alpha per layer: about 1.25 bits a prunable weight on disk
    assert all(layer.stored_as == "binary" for layer in report.layers)
    assert 1.25 <= report.binary["bits_per_weight"] < 1.4
    exported = load_exported(out)
    x = torch.randn(9, 64)
    with torch.inference_mode():
        assert torch.allclose(exported(x), model.eval()(x), atol=TOLERANCE, rtol=TOLERANCE)


def test_ticket_inspect_prints_what_an_export_would_store(tmp_path, capsys):
    net = _mlp()
    ticket = _ticket(net, 0.05)
    sizes = stored_bytes(ticket)
    # As the export stores it: every entry of this network is a prunable layer's weight or bias.
    for dtype in ("float32", "float16"):
        report = export_ticket(net, ticket, input_shape=(64,), batch_sizes=(1,), reps=1, dtype=dtype)[1]
        assert sizes[dtype] == sum(layer.disk_bytes for layer in report.layers)
    assert sizes["float16"] < sizes["float32"] < sizes["dense"] == 4 * sum(p.numel() for p in net.parameters())
    ticket.save(tmp_path / "ticket.pt")
    assert cli(["ticket", "inspect", str(tmp_path / "ticket.pt")]) == 0
    out = capsys.readouterr().out
    assert (f"an export stores (tensor bytes): {sizes['float32']:,} with float32 values"
            f" ({sizes['dense'] / sizes['float32']:.2f}x smaller), {sizes['float16']:,} with float16 values") in out
    assert f"vs {sizes['dense']:,} as dense float32" in out

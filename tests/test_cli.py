"""The lt-lightning command: a fit from a YAML config, its report and tickets, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lt_lightning.cli import main
from lt_lightning.records import read_history

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "configs")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real IMP run from examples/configs/digits_smoke.yaml, in-process."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lt-lightning"])  # LightningCLI warns when given args and a command line
        status = main(["fit", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"),
                       "--trainer.logger.init_args.save_dir", str(root), "--trainer.enable_progress_bar", "false"])
    assert status == 0
    return os.path.join(root, "lightning_logs", "version_0")


def _history(run_dir):
    return read_history(os.path.join(run_dir, "imp_history.json"))


def test_fit_from_yaml_runs_the_configured_experiment(run_dir):
    history = _history(run_dir)
    assert [h["round"] for h in history] == [0, 1, 2]
    assert history[0]["train_steps"] == 20 and history[1]["start_step"] == 2  # max_steps and RewindCallback step
    assert history[0]["monitor"] == "val_acc"
    # layer_fractions from YAML (a regex key): the output layer (160 weights) keeps 0.8 ** r of them.
    assert history[2]["layer_density"]["model.out.weight"] == pytest.approx(round(0.64 * 160) / 160)
    assert [os.path.basename(h["ticket"]) for h in history] == ["round_00.pt", "round_01.pt", "round_02.pt"]
    assert os.path.isfile(os.path.join(run_dir, "config.yaml"))


def _cell(text):
    return None if text == "n/a" else float(text)


def test_report_writes_pngs_and_a_table_of_the_history(run_dir, capsys):
    assert main(["report", run_dir]) == 0
    out_dir = os.path.join(run_dir, "report")
    written = capsys.readouterr().out.split()
    assert written == [os.path.join(out_dir, name) for name in
                       ("accuracy_vs_weights_remaining.png", "layer_density.png", "mask_overlap.png", "report.md")]
    for path in written[:3]:
        with open(path, "rb") as f:
            assert f.read(8) == PNG
    with open(written[3]) as f:
        page = f.read()
    assert "![accuracy_vs_weights_remaining](accuracy_vs_weights_remaining.png)" in page
    first_table = page.split("\n\n| ")[1].split("\n\n")[0]  # the history's table; later ones (sizes) have their own tests
    rows = [line.strip("|").split("|") for line in ("| " + first_table).splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], [[_cell(c.strip()) for c in row] for row in rows[1:]]
    history = _history(run_dir)
    assert len(body) == len(history)
    for row, record in zip(body, history):
        cells = dict(zip(header, row))
        expected = {"round": record["round"], "density": record["density"],
                    "weights_remaining_pct": 100 * record["density"], "best_step": record["best_step"],
                    "mask_overlap": record["mask_overlap"], "distance_from_rewind": record["distance_from_rewind"],
                    **{f"final/{k}": v for k, v in record["final"].items()},
                    **{f"best/{k}": v for k, v in record["best"].items()}}
        for column, value in expected.items():
            assert cells[column] == (None if value is None else pytest.approx(value, rel=1e-3)), column


def test_report_into_another_folder_with_a_chosen_metric(run_dir, tmp_path):
    assert main(["report", run_dir, "--out", str(tmp_path), "--metric", "val_loss"]) == 0
    assert sorted(os.listdir(tmp_path)) == [
        "accuracy_vs_weights_remaining.png", "layer_density.png", "mask_overlap.png", "report.md"]
    with open(tmp_path / "report.md") as f:
        assert "- final val_loss: dense" in f.read()


def test_ticket_inspect_prints_densities_and_metadata(run_dir, capsys):
    path = _history(run_dir)[2]["ticket"]
    assert main(["ticket", "inspect", path]) == 0
    out = capsys.readouterr().out
    record = _history(run_dir)[2]
    assert f"density: {record['density']:.6g} (" in out
    for name, density in record["layer_density"].items():
        assert any(line.split()[0] == name and f"density {density:.4g}" in line for line in out.splitlines())
    metadata = json.loads(out[out.index("metadata:\n") + len("metadata:\n"):])
    assert metadata["round"] == 2 and metadata["final"] == pytest.approx(record["final"])


def test_example_configs_parse(capsys):
    for name in ("digits_smoke.yaml", "mnist1d_imp.yaml", "fashion_mnist_lenet.yaml"):
        with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as done:
            mp.setattr(sys, "argv", ["lt-lightning"])
            main(["fit", "--config", os.path.join(CONFIGS, name), "--print_config"])
        assert done.value.code == 0, name
        assert "lt_lightning.IMPCallback" in capsys.readouterr().out, name


# ---------------------------------------------------------------------------------------------- bad input
def _fails(argv, capsys, status):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lt-lightning"])
        assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_report_without_history(tmp_path, capsys):
    err = _fails(["report", str(tmp_path)], capsys, 1)
    assert err.startswith(f"lt-lightning report: error: no IMP history in '{tmp_path}'")
    assert "imp_history.json" in err


def test_report_with_an_unknown_metric(run_dir, tmp_path, capsys):
    err = _fails(["report", run_dir, "--out", str(tmp_path), "--metric", "top5"], capsys, 1)
    assert "metric 'top5' is not in the run's history; its metrics are ['train_loss', 'val_acc', 'val_loss']" in err


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x00garbage", "is not a readable ticket file"),
    (None, "is not a ticket: expected format 'lt-lightning-ticket/1'"),
])
def test_ticket_inspect_of_a_bad_file(tmp_path, capsys, content, expected):
    path = tmp_path / "round_03.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    err = _fails(["ticket", "inspect", str(path)], capsys, 1)
    assert err.startswith("lt-lightning ticket: error: ") and f"'{path}' {expected}" in err


def _config(tmp_path, callback_args):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "trainer:\n  max_steps: 2\n  callbacks:\n    - class_path: lt_lightning.IMPCallback\n      init_args:\n"
        + "".join(f"        {line}\n" for line in callback_args)
        + "model:\n  class_path: lt_lightning.zoo.Classifier\ndata:\n  class_path: lt_lightning.zoo.DigitsDataModule\n")
    return str(path)


@pytest.mark.parametrize(("callback_args", "expected"), [
    (["rounds: 2", "prune_fraction: 0.5"],
     "Problem with given class_path 'lt_lightning.IMPCallback': Option 'prune_fraction' is not accepted"),
    (["reset: rewinding"], "Expected a typing.Literal['rewind', 'lr_rewind', 'finetune']. Got value: rewinding"),
    (["pruning_fraction: 1.5"],
     "a configured class refused its arguments: pruning_fraction=1.5 is not allowed; expected a number strictly"),
])
def test_config_errors_name_the_file_and_what_was_expected(tmp_path, capsys, callback_args, expected):
    path = _config(tmp_path, callback_args)
    err = _fails(["fit", "--config", path], capsys, 2)
    assert err.startswith(f"lt-lightning fit: error in {path}: ")
    assert expected in err and len(err.splitlines()) == 1  # one line: a job log's last line is its error


def test_console_script_reports_errors_with_a_status(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "lt-lightning")
    if not os.path.exists(script):
        pytest.skip("lt-lightning is not installed in this environment")
    done = subprocess.run([script, "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("lt-lightning report: error: no IMP history") and "Traceback" not in done.stderr


def test_fit_runs_a_module_that_brings_its_own_dataloaders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "own.yaml"
    config.write_text(
        "trainer:\n  max_steps: 8\n  logger: false\n  enable_checkpointing: false\n  enable_progress_bar: false\n"
        "  callbacks:\n    - class_path: lt_lightning.IMPCallback\n      init_args: {rounds: 1, dirpath: out}\n"
        "model:\n  class_path: own_loaders.OwnLoaders\n"
    )
    assert main(["fit", "--config", str(config)]) == 0
    history = read_history(tmp_path / "out" / "imp_history.json")
    assert [h.round for h in history] == [0, 1] and history[1].density == pytest.approx(0.8, abs=1e-2)


def test_console_script_finds_a_module_in_the_working_folder(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "lt-lightning")
    if not os.path.exists(script):
        pytest.skip("lt-lightning is not installed in this environment")
    with open(os.path.join(os.path.dirname(__file__), "own_loaders.py")) as f:
        (tmp_path / "mymod.py").write_text(f.read())
    (tmp_path / "my.yaml").write_text(
        "trainer:\n  max_steps: 2\n  logger: false\n  enable_checkpointing: false\n  enable_progress_bar: false\n"
        "model:\n  class_path: mymod.OwnLoaders\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([script, "fit", "--config", "my.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ticket_export_of_an_imp_ticket_equals_the_masked_dense_model(run_dir, tmp_path, capsys):
    from lt_lightning.export import TOLERANCE, load_exported, read_export_report
    from lt_lightning.ticket import load_ticket
    from lt_lightning.zoo import Classifier

    ticket_path, out = _history(run_dir)[2]["ticket"], tmp_path / "exported.pt"
    argv = ["ticket", "export", ticket_path, "--config", os.path.join(run_dir, "config.yaml"), "--out", str(out),
            "--batch-sizes", "1", "8", "--force-sparse"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = read_export_report(out)
    assert report.table() in printed and report.statement() in printed and f"written: {out}" in printed
    assert all(layer.swapped for layer in report.layers) and report.batch_sizes == [1, 8]
    masked = Classifier(model="mlp", model_kwargs={"in_features": 64, "hidden": [32, 16], "num_classes": 10})
    load_ticket(ticket_path).apply(masked)
    exported = load_exported(out)
    assert any(type(m).__name__ == "SparseLinear" for m in exported.modules())
    x = torch.randn(7, 64)
    with torch.inference_mode():
        assert torch.allclose(exported(x), masked.model.eval()(x), atol=TOLERANCE, rtol=TOLERANCE)
    # Never over an existing file: the export there is left as it was.
    before = out.read_bytes()
    assert "exists" in _fails(argv, capsys, 1) and out.read_bytes() == before


def test_ticket_export_of_another_architecture_writes_nothing(run_dir, tmp_path, capsys):
    with open(os.path.join(run_dir, "config.yaml")) as f:
        config = f.read()
    assert "- 32\n" in config
    other = tmp_path / "other.yaml"
    other.write_text(config.replace("- 32\n", "- 24\n", 1))  # same layer names, other shapes
    out = tmp_path / "exported.pt"
    err = _fails(["ticket", "export", _history(run_dir)[2]["ticket"], "--config", str(other), "--out", str(out)],
                 capsys, 1)
    assert err.startswith("lt-lightning ticket: error: ") and "shape" in err
    assert not out.exists() and os.listdir(tmp_path) == ["other.yaml"]
    err = _fails(["ticket", "export", _history(run_dir)[2]["ticket"], "--module", "lt_lightning.zoo.Nope",
                  "--out", str(out)], capsys, 1)
    assert "--module 'lt_lightning.zoo.Nope' is not an importable nn.Module class" in err and not out.exists()

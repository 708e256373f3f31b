"""lt-lightning report over several seeds of a real IMP experiment and their branches; bad input."""

from __future__ import annotations

import os

import pytest
from conftest import run_cli as _main

from lt_lightning.analysis.verdicts import compare
from lt_lightning.records import read_history, read_result

pytest.importorskip("matplotlib")
CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """examples/configs/digits_smoke.yaml with seed_everything 0, 1, 2, and reinit of round 2's ticket on each."""
    root = tmp_path_factory.mktemp("seeds")
    paths = []
    for seed in range(3):
        assert _main(["fit", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"), "--seed_everything", str(seed),
                      "--trainer.logger.init_args.save_dir", str(root),
                      "--trainer.enable_progress_bar", "false"]) == 0
        paths.append(os.path.join(root, "lightning_logs", f"version_{seed}"))
        assert _main(["branch", paths[-1], "--control", "reinit", "--rounds", "2", "--seeds", "7"]) == 0
    return paths


def test_report_aggregates_seeds_with_intervals_and_verdicts(runs, capsys):
    assert _main(["report", *runs]) == 0
    out = os.path.join(os.path.dirname(runs[0]), "report")
    assert capsys.readouterr().out.split()[-2:] == [os.path.join(out, "ticket_vs_controls.png"),
                                                    os.path.join(out, "report.md")]
    with open(os.path.join(out, "ticket_vs_controls.png"), "rb") as f:
        assert f.read(8) == PNG
    histories = [read_history(os.path.join(r, "imp_history.json")) for r in runs]
    controls = [read_result(os.path.join(r, "branches", "reinit", "round_02", "seed_7", "result.json"))[0] for r in runs]
    density = histories[0][2].density
    assert all(h[2].density == density for h in histories)
    expected = compare([h[0].final["val_acc"] for h in histories],
                       {histories[0][r].density: [h[r].final["val_acc"] for h in histories] for r in (1, 2)},
                       {"reinit": {density: [c.final["val_acc"] for c in controls]}})
    with open(os.path.join(out, "report.md")) as f:
        page = f.read()
    row = expected[1]
    reinit = row["controls"]["reinit"]
    line = next(line for line in page.splitlines() if line.startswith("| 2 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == ["2", f"{100 * density:.3g}", "3",
                         f"{100 * row['ticket_mean']:.2f} [{100 * row['ticket_ci_low']:.2f},"
                         f" {100 * row['ticket_ci_high']:.2f}]"]
    assert cells[5] == ("yes" if row["matching"] else "no")
    assert cells[6] == f"{100 * reinit['mean']:.2f} [{100 * reinit['ci_low']:.2f}, {100 * reinit['ci_high']:.2f}]"
    assert f"(p={reinit['p_value']:.3g})" in cells[7] and cells[8] == ("yes" if row["winning"] else "no")
    assert "| 1 |" in page and "# IMP runs over 3 seeds" in page


def test_one_run_with_branches_adds_the_controls_to_its_report(runs, tmp_path, capsys):
    assert _main(["report", runs[1], "--out", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["accuracy_vs_weights_remaining.png", "layer_density.png",
                                            "mask_overlap.png", "report.md", "ticket_vs_controls.png"]
    page = (tmp_path / "report.md").read_text()
    assert page.index("| round | density |") < page.index("## Ticket vs. controls") < page.index("| reinit (%) |")


# ---------------------------------------------------------------------------------------------- bad input
def _fails(argv, capsys):
    assert _main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lt-lightning report: error: ") and "Traceback" not in err
    return err


def test_runs_of_different_configurations(runs, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(runs[2], other)
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("max_steps: 20", "max_steps: 40").replace("lr: 0.1", "lr: 0.2"))
    err = _fails(["report", runs[0], str(other), "--out", str(tmp_path / "r")], capsys)
    assert ("runs of different configurations cannot be aggregated: "
            f"{runs[0]!r} and {str(other)!r} differ in ['trainer.max_steps', 'model.init_args.lr']") in err
    assert not (tmp_path / "r").exists()


def test_a_run_dir_without_history(runs, tmp_path, capsys):
    err = _fails(["report", runs[0], str(tmp_path)], capsys)
    assert f"no IMP history in '{tmp_path}'" in err


def test_verdicts_to_a_wandb_run(runs, tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert _main(["report", *runs, "--out", str(tmp_path / "r"), "--wandb-project", "lt-test"]) == 0
    import wandb

    wandb.teardown()
    (table,) = (tmp_path / "r" / "wandb").glob("offline-run-*/files/media/table/lt/verdicts_*.table.json")
    assert '"reinit_mean"' in table.read_text()


def test_wandb_without_anything_to_compare(runs, tmp_path, capsys):
    pristine = tmp_path / "run"
    import shutil

    shutil.copytree(runs[0], pristine, ignore=shutil.ignore_patterns("branches"))
    err = _fails(["report", str(pristine), "--wandb-project", "lt-test"], capsys)
    assert "--wandb-project logs the verdicts against controls, and this run has no branches" in err
    assert not (pristine / "report").exists()


def test_one_run_twice_is_not_two_seeds(runs, tmp_path, capsys):
    import shutil

    err = _fails(["report", runs[0], runs[0], "--out", str(tmp_path / "r")], capsys)
    assert f"run folder {runs[0]!r} is given twice (also as {runs[0]!r})" in err
    copy = tmp_path / "copy"
    shutil.copytree(runs[0], copy)
    err = _fails(["report", runs[0], str(copy), runs[1], "--out", str(tmp_path / "r")], capsys)
    assert f"runs with the same seed are one seed, not several (seed_everything 0: [{runs[0]!r}, {str(copy)!r}])" in err
    assert not (tmp_path / "r").exists()


def test_an_existing_report_is_kept_unless_overwrite(runs, tmp_path, capsys):
    (tmp_path / "report.md").write_text("my notes")
    err = _fails(["report", runs[1], "--out", str(tmp_path)], capsys)
    assert f"{str(tmp_path / 'report.md')!r} exists and would be overwritten: pass --overwrite" in err
    assert (tmp_path / "report.md").read_text() == "my notes" and os.listdir(tmp_path) == ["report.md"]
    assert _main(["report", runs[1], "--out", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "report.md").read_text().startswith("# IMP run ")

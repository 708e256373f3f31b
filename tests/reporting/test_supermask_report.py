"""lt-lightning report over real SupermaskCallback runs on the digits: accuracy against density, grouped by method,
mean and interval over seeds; bad input."""

from __future__ import annotations

import math
import os
import statistics

import lightning.pytorch as pl
import pytest
from conftest import digits_model, make_trainer
from conftest import run_cli as _main
from lightning.pytorch.loggers import CSVLogger

from lt_lightning import IMPCallback, SupermaskCallback
from lt_lightning.reporting.supermask import (
    FIGURE,
    final_metrics,
    is_supermask_run,
    plot_supermask,
    read_supermask_runs,
    summarize,
)
from lt_lightning.zoo import DigitsDataModule

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"
T_975_DF1 = 12.706204736  # Student t, two-sided 95%, one degree of freedom (two runs)


def _fit(root, name, seed, **kwargs):
    pl.seed_everything(seed, verbose=False)
    trainer = make_trainer(root, [SupermaskCallback(seed=seed, **kwargs)], max_epochs=1,
                           logger=CSVLogger(str(root), name=name, version=f"seed_{seed}"))
    trainer.fit(digits_model(lr=0.05), DigitsDataModule(batch_size=64, seed=0))
    return trainer.log_dir, float(trainer.callback_metrics["val_acc"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Edge-popup at density 0.5 (seeds 0, 1) and 0.25 (seed 0); biprop at 0.5 (seeds 0, 1): (log dir, val_acc)."""
    root = tmp_path_factory.mktemp("supermask")
    return {
        ("edge_popup", 0.5): [_fit(root, "ep50", s, density=0.5) for s in (0, 1)],
        ("edge_popup", 0.25): [_fit(root, "ep25", 0, density=0.25)],
        ("biprop", 0.5): [_fit(root, "bp50", s, density=0.5, method="biprop") for s in (0, 1)],
    }


def _dirs(runs):
    return [path for group in runs.values() for path, _ in group]


def test_a_supermask_run_leaves_its_ticket_and_its_accuracies(runs):
    path, acc = runs[("edge_popup", 0.5)][0]
    assert is_supermask_run(path)
    final = final_metrics(os.path.join(path, "metrics.csv"))
    assert final["val_acc"] == pytest.approx(acc)
    assert not any(k.startswith("supermask/") for k in final) and "step" not in final


def test_report_draws_accuracy_against_density_per_method_with_intervals(runs, capsys):
    assert _main(["report", *_dirs(runs)]) == 0
    out = os.path.join(os.path.commonpath(_dirs(runs)), "report")
    assert capsys.readouterr().out.split() == [os.path.join(out, FIGURE), os.path.join(out, "report.md")]
    with open(os.path.join(out, FIGURE), "rb") as f:
        assert f.read(8) == PNG
    with open(os.path.join(out, "report.md")) as f:
        page = f.read()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in page.splitlines()
            if line.startswith("| edge_popup") or line.startswith("| biprop")]
    assert [r[:3] for r in rows] == [["edge_popup", "50", "2"], ["edge_popup", "25", "1"], ["biprop", "50", "2"]]
    for row, key in zip(rows, [("edge_popup", 0.5), ("edge_popup", 0.25), ("biprop", 0.5)]):
        accs = [acc for _, acc in runs[key]]
        mean = statistics.fmean(accs)
        expected = f"{100 * mean:.2f}"
        if len(accs) > 1:
            half = T_975_DF1 * statistics.stdev(accs) / math.sqrt(2)
            expected += f" [{100 * (mean - half):.2f}, {100 * (mean + half):.2f}]"
        assert row[3] == expected and row[4] == ", ".join(f"{100 * a:.2f}" for a in accs)
    assert f"![{FIGURE[:-4]}]({FIGURE})" in page and "Student t" in page


def test_the_plot_has_a_line_per_method_at_the_means(runs):
    metric, rows = summarize(read_supermask_runs(_dirs(runs)))
    assert metric == "val_acc"
    fig = plot_supermask(metric, rows)
    (ax,), (legend,) = fig.axes, fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["edge_popup", "biprop"]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]  # from dense to sparse
    means = [container.lines[0] for container in ax.containers]  # one error-bar line per method
    x = [list(line.get_xdata()) for line in means]  # set apart by 3% of the density: the first left (reversed axis)
    assert x[0] == pytest.approx([50 * 1.03 ** 0.5, 25 * 1.03 ** 0.5]) and x[1] == pytest.approx([50 / 1.03 ** 0.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "25"]
    assert list(means[0].get_ydata()) == pytest.approx(
        [100 * statistics.fmean(a for _, a in runs[("edge_popup", d)]) for d in (0.5, 0.25)])


def test_variants_name_the_arguments_that_differ(runs, tmp_path):
    other, _ = _fit(tmp_path, "kn", 0, density=0.5, weight_init="kaiming_normal")
    _, rows = summarize(read_supermask_runs([runs[("edge_popup", 0.5)][0][0], other]))
    assert [r["variant"] for r in rows] == ["edge_popup, weight_init=module", "edge_popup, weight_init=kaiming_normal"]


def test_bad_input_is_named(runs, tmp_path, capsys):
    supermask = runs[("edge_popup", 0.5)][0][0]
    pl.seed_everything(0, verbose=False)
    imp = make_trainer(tmp_path, [IMPCallback(rounds=1)], max_epochs=1)
    imp.fit(digits_model(), DigitsDataModule(batch_size=64, seed=0))
    assert not is_supermask_run(imp.log_dir)
    assert _main(["report", supermask, imp.log_dir]) == 1
    assert "hold IMP runs (imp_history.json) and the others supermask runs" in capsys.readouterr().err
    assert _main(["report", supermask, str(tmp_path / "nothing")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert _main(["report", supermask, "--metric", "val_f1"]) == 1
    assert "metric 'val_f1' is not in" in capsys.readouterr().err
    assert _main(["report", supermask, "--wandb-project", "p"]) == 1
    assert "supermask runs have none" in capsys.readouterr().err
    pl.seed_everything(0, verbose=False)
    unlogged = make_trainer(tmp_path / "unlogged", [SupermaskCallback(density=0.5)], max_epochs=1, logger=False)
    unlogged.fit(digits_model(lr=0.05), DigitsDataModule(batch_size=64, seed=0))
    assert _main(["report", str(tmp_path / "unlogged")]) == 1
    assert "give the Trainer a CSVLogger" in capsys.readouterr().err

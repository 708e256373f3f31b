"""Linear mode connectivity results shown: figures, Markdown, the report folder, and an offline W&B run read back."""

from __future__ import annotations

import glob
import json
import os

import lightning.pytorch as pl
import pytest
from test_wandb import _items, offline_env, read_records  # noqa: F401  # offline_env is a fixture

from lt_lightning.reporting.lmc import log_instability, markdown_rewind_search, write_lmc_report
from lt_lightning.reporting.lmc_plots import plot_error_vs_alpha, plot_rewind_search

PNG = b"\x89PNG\r\n\x1a\n"


def _result(step=0, barrier=0.3, errors=(0.1, 0.4, 0.2)):
    alphas = [i / (len(errors) - 1) for i in range(len(errors))]
    curve = [{"alpha": a, "val_loss": 2 * e, "val_acc": 1 - e, "val_err": e} for a, e in zip(alphas, errors)]
    return {"analysis": "instability", "step": step, "train_steps": 20, "seeds": [1, 2], "key": "val_err",
            "threshold": 0.02, "barrier": barrier, "stable": barrier < 0.02, "loss_barrier": 0.6,
            "endpoints": [{k: v for k, v in curve[i].items() if k != "alpha"} for i in (0, -1)],
            "l2_distance": 1.5, "cosine_similarity": 0.9, "density": 1.0, "start": "s.pt", "ticket": None,
            "points": len(curve), "curve": curve}


def _search(tmp_path):
    rows = []
    for step, barrier, ticket in ((0, 0.3, 0.2), (5, 0.01, 0.1), (500, 0.0, 0.09)):
        out = tmp_path / f"step_{step}it"
        out.mkdir()
        (out / "instability.json").write_text(json.dumps(_result(step, barrier)))
        rows.append({"step": step, "barrier": barrier, "stable": barrier < 0.02, "copy_errors": [0.1, 0.2],
                     "out": str(out), "ticket_round": 2, "ticket_density": 0.25, "ticket_error": ticket,
                     "dense_error": 0.1, "matches": ticket <= 0.102})
    search = {"analysis": "rewind_search", "key": "val_err", "threshold": 0.02, "eps": 0.002, "density": 0.25,
              "seeds": [1, 2], "points": 3, "rows": rows, "earliest_stable": 5, "earliest_matching": 5}
    (tmp_path / "rewind_search.json").write_text(json.dumps(search))
    return search


def test_error_vs_alpha_draws_each_curve_and_its_endpoint_mean():
    figure = plot_error_vs_alpha([_result(0), _result(5, 0.1, (0.2, 0.3, 0.2))])
    ax = figure.axes[0]
    curves = [line for line in ax.lines if line.get_label().startswith("step")]
    assert [c.get_label() for c in curves] == ["step 0: barrier 0.3", "step 5: barrier 0.1"]
    assert list(curves[0].get_ydata()) == [0.1, 0.4, 0.2] and list(curves[0].get_xdata()) == [0, 0.5, 1]
    means = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert [list(m.get_ydata()) for m in means] == [[pytest.approx(0.15)] * 2, [pytest.approx(0.2)] * 2]
    with pytest.raises(ValueError, match="results is empty"):
        plot_error_vs_alpha([])


def test_rewind_search_figure_marks_stable_and_matching_steps(tmp_path):
    figure = plot_rewind_search(_search(tmp_path))
    top, bottom = figure.axes
    lines = {line.get_label(): line for line in [*top.lines, *bottom.lines]}
    assert list(lines["error barrier (instability)"].get_ydata()) == [0.3, 0.01, 0.0]
    assert list(lines["stable"].get_xdata()) == [5, 500]
    assert list(lines["matching"].get_xdata()) == [5, 500]
    assert list(lines["IMP ticket near density 0.25"].get_ydata()) == [0.2, 0.1, 0.09]
    assert bottom.get_xscale() == "symlog"  # steps from 5 to 500 and 0: a log axis with 0 on it


def test_report_folder_of_a_search_and_of_an_instability(tmp_path):
    search = _search(tmp_path)
    written = write_lmc_report(tmp_path)
    assert [os.path.basename(p) for p in written] == ["rewind_search.png", "error_vs_alpha.png", "report.md"]
    for path in written[:2]:
        with open(path, "rb") as f:
            assert f.read(8) == PNG
    with open(written[-1]) as f:
        page = f.read()
    assert page == markdown_rewind_search(search, ["rewind_search.png", "error_vs_alpha.png"])
    assert "Earliest stable step (barrier below 0.02): **5**." in page
    assert "| 500 | 0 | yes | 0.1 | 0.2 | 2 | 0.25 | 0.09 | 0.1 | yes |" in page
    single = write_lmc_report(tmp_path / "step_0it", tmp_path / "single")
    assert sorted(os.listdir(tmp_path / "single")) == ["error_vs_alpha.png", "report.md"] and len(single) == 2
    with pytest.raises(ValueError, match="holds neither rewind_search.json nor instability.json"):
        write_lmc_report(tmp_path / "single")


def test_wandb_gets_the_curve_scalars_a_table_and_a_line_plot(tmp_path, offline_env):  # noqa: F811
    from lightning.pytorch.loggers import WandbLogger
    wandb = pytest.importorskip("wandb")

    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="lt-lightning-test")
    trainer = pl.Trainer(logger=logger, default_root_dir=str(tmp_path))
    result = _result()
    log_instability(trainer, result)
    logger.experiment.finish()
    wandb.teardown()

    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = read_records(run_file)
    rows = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    points = [row for row in rows if "lmc/alpha" in row]
    assert [(row["trainer/global_step"], row["lmc/alpha"], row["lmc/val_err"]) for row in points] == \
        [(i, p["alpha"], p["val_err"]) for i, p in enumerate(result["curve"])]
    (summary,) = [row for row in rows if "lmc/barrier" in row]
    assert summary["lmc/barrier"] == 0.3 and summary["lmc/stable"] == 0.0 and summary["lmc/loss_barrier"] == 0.6
    (table_row,) = [row for row in rows if "lmc/curve/path" in row]
    with open(os.path.join(os.path.dirname(run_file), "files", table_row["lmc/curve/path"])) as f:
        table = json.load(f)
    assert table["columns"] == ["alpha", "val_loss", "val_acc", "val_err"]
    assert [row[3] for row in table["data"]] == [0.1, 0.4, 0.2]
    charts = {item.nested_key[-1]: json.loads(item.value_json) for r in records
              if r.WhichOneof("record_type") == "config" for item in r.config.update
              if list(item.nested_key[:2]) == ["_wandb", "visualize"]}
    assert charts["lmc/plots/error_vs_alpha"]["panel_config"]["fieldSettings"] == {"x": "alpha", "y": "val_err",
                                                                                   "stroke": None}

"""The verdicts over runs as a W&B table: a real offline run, read back from the file wandb wrote."""

import glob
import json
import os

import pytest
from test_aggregate import _run
from test_wandb import _items, offline_env, read_records  # noqa: F401  # offline_env is a fixture

from lt_lightning.reporting.aggregate import aggregate, read_runs, verdict_table

wandb = pytest.importorskip("wandb")
pytest.importorskip("matplotlib")


def test_verdicts_table_plot_and_lowest_matching_density(tmp_path, offline_env):  # noqa: F811
    from lt_lightning.reporting.plots import write_verdict_plot
    from lt_lightning.reporting.wandb import log_verdicts_to_wandb

    runs = [_run(tmp_path, name, accs, controls={"reinit": {1: {9: c1}, 2: {9: c2}}})
            for name, accs, c1, c2 in [("a", [0.90, 0.91, 0.85], 0.87, 0.80), ("b", [0.92, 0.93, 0.84], 0.89, 0.79),
                                       ("c", [0.91, 0.92, 0.86], 0.90, 0.81)]]
    result = aggregate(read_runs(runs), "val_acc")
    image = write_verdict_plot(result, str(tmp_path / "report"))
    run_id = log_verdicts_to_wandb(result, image, project="lt-lightning-test", dir=str(tmp_path))
    wandb.teardown()

    (run_file,) = glob.glob(str(tmp_path / "wandb" / f"offline-run-*-{run_id}" / "run-*.wandb"))
    records = read_records(run_file)
    kinds = {r.WhichOneof("record_type") for r in records}
    assert "exit" in kinds
    (row,) = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    with open(os.path.join(os.path.dirname(run_file), "files", row["lt/verdicts/path"])) as f:
        table = json.load(f)
    columns, expected = verdict_table(result)
    assert table["columns"] == columns and len(table["data"]) == 2
    for got, want in zip(table["data"], expected):
        assert got == [w if w is None or isinstance(w, bool) else pytest.approx(w) for w in want]
    assert row["lt/ticket_vs_controls/_type"] == "image-file"
    summaries = [_items(r.summary.update) for r in records if r.WhichOneof("record_type") == "summary"]
    assert any(s.get("lt/lowest_matching_density") == 0.5 for s in summaries)

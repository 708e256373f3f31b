"""Aggregating seeds of one experiment and their branches: hand-made run folders with known answers, bad input."""

import os

import pytest
import yaml

from lt_lightning.analysis.verdicts import compare
from lt_lightning.records import RoundRecord, branch_dir, write_history, write_result
from lt_lightning.reporting.aggregate import aggregate, config_differences, markdown_verdicts, read_runs, verdict_table

DENSITIES = [1.0, 0.5, 0.25]


def _config(seed, **trainer):
    return {"seed_everything": seed,
            "trainer": {"max_steps": 20, **trainer,
                        "logger": {"class_path": "CSVLogger", "init_args": {"save_dir": f"logs{seed}", "version": seed}},
                        "callbacks": [{"class_path": "lt_lightning.IMPCallback",
                                       "init_args": {"rounds": 2, "dirpath": f"out{seed}"}}]},
            "model": {"init_args": {"lr": 0.1}}}


def _run(root, name, accs, steps=(10, 8, 6), controls=None, config=None, densities=DENSITIES):
    """A run folder: its history (final val_acc per round), config.yaml and branch results
    ``{control: {round: {seed: acc}}}``."""
    path = root / name
    history = [RoundRecord(round=r, density=d, final={"val_acc": a, "val_loss": 1 - a}, best_step=s, monitor="val_acc",
                           mode="max") for r, (d, a, s) in enumerate(zip(densities, accs, steps))]
    write_history(path / "imp_history.json", history)
    if config is not None:
        (path / "config.yaml").write_text(yaml.safe_dump(config))
    for control, by_round in (controls or {}).items():
        for round_, by_seed in by_round.items():
            for seed, acc in by_seed.items():
                record = RoundRecord(round=round_, density=densities[round_], final={"val_acc": acc, "val_loss": 1 - acc},
                                     best_step=9,
                                     monitor="val_acc", mode="max")
                write_result(os.path.join(branch_dir(path, control, round_, seed), "result.json"), record,
                             {"control": control, "control_seed": seed})
    return str(path)


def test_seeds_aggregate_per_density_and_controls_pair_with_their_run(tmp_path):
    runs = [
        _run(tmp_path, "a", [0.90, 0.91, 0.85], controls={"reinit": {1: {5: 0.88, 6: 0.86}, 2: {5: 0.80}}},
             config=_config(0)),
        _run(tmp_path, "b", [0.92, 0.93, 0.84], controls={"reinit": {1: {5: 0.89}, 2: {5: 0.79}}}, config=_config(1)),
        _run(tmp_path, "c", [0.91, 0.92, 0.86], controls={"reinit": {1: {5: 0.90}, 2: {5: 0.81}}}, config=_config(2)),
    ]
    result = aggregate(read_runs(runs), "val_acc")
    # Run a's reinit at round 1 is the mean of its two seeds, 0.87; pairing follows the run order.
    expected = compare([0.90, 0.92, 0.91], {0.5: [0.91, 0.93, 0.92], 0.25: [0.85, 0.84, 0.86]},
                       {"reinit": {0.5: [0.87, 0.89, 0.90], 0.25: [0.80, 0.79, 0.81]}},
                       ticket_steps={0.5: [8, 8, 8], 0.25: [6, 6, 6]},
                       control_steps={"reinit": {0.5: [9, 9, 9], 0.25: [9, 9, 9]}})
    assert [{k: v for k, v in row.items() if k != "round"} for row in result.rows] == expected
    assert [row["round"] for row in result.rows] == [1, 2]
    assert result.rows[0]["matching"] and result.rows[0]["winning"]  # +1 point over dense, beats reinit
    assert not result.rows[1]["matching"]  # 6 points below dense in every seed
    assert result.lowest_matching_density == 0.5 and result.controls == ["reinit"] and result.notes == []
    assert result.rows[0]["controls"]["reinit"]["learns_faster"]  # best step 8 vs 9
    columns, table = verdict_table(result)
    assert dict(zip(columns, table[0]))["reinit_mean"] == pytest.approx((0.87 + 0.89 + 0.90) / 3)
    assert (dict(zip(columns, table[0]))["ticket_steps_mean"], dict(zip(columns, table[0]))["reinit_learns_faster"]) \
        == (8, True)
    page = markdown_verdicts(result, "title")
    assert "- lowest matching density: 0.5 (50% of weights remaining)" in page
    assert "| 1 | 50 | 3 | 92.00 [89.52, 94.48] | +1.00 " in page
    round_1 = next(line for line in page.splitlines() if line.startswith("| 1 |"))
    assert round_1.endswith("| yes | 8 (reinit 9) |")  # winning, and learns faster than reinit


def test_a_control_missing_in_some_run_is_left_out_with_a_note(tmp_path):
    runs = [_run(tmp_path, "a", [0.9, 0.9, 0.8], controls={"reinit": {1: {1: 0.8}, 2: {1: 0.7}}}),
            _run(tmp_path, "b", [0.9, 0.9, 0.8], controls={"reinit": {2: {1: 0.7}}})]
    result = aggregate(read_runs(runs), "val_acc")
    assert result.rows[0]["controls"] == {} and result.rows[0]["winning"] is None
    assert set(result.rows[1]["controls"]) == {"reinit"}
    assert result.notes == [f"reinit at round 1 (density 0.5) is left out: no result in [{runs[1]!r}]"]
    assert "- note: reinit at round 1" in markdown_verdicts(result)


def test_one_run_with_branches_compares_single_values(tmp_path):
    run = _run(tmp_path, "a", [0.9, 0.92, 0.85], controls={"shuffle_masks": {1: {1: 0.91}, 2: {1: 0.86}}})
    result = aggregate(read_runs([run]), "val_acc")
    assert [(r["matching"], r["winning"]) for r in result.rows] == [(True, True), (False, False)]
    assert "One run: single values, no statistics" in markdown_verdicts(result)
    loss = aggregate(read_runs([run]), "val_loss")  # minimised: the signs flip
    assert not loss.higher_is_better and loss.rows[0]["matching"]


def test_config_differences_ignore_the_seed_and_output_paths():
    assert config_differences(_config(0), _config(1)) == []
    assert config_differences(_config(0), _config(1, max_epochs=3)) == ["trainer.max_epochs"]
    changed = _config(1)
    changed["trainer"]["callbacks"][0]["init_args"]["rounds"] = 3
    changed["model"]["init_args"]["lr"] = 0.2
    assert config_differences(_config(0), changed) == ["trainer.callbacks.0.init_args.rounds", "model.init_args.lr"]


# ---------------------------------------------------------------------------------------------- bad input
def test_runs_of_different_configurations(tmp_path):
    a = _run(tmp_path, "a", [0.9, 0.9, 0.8], config=_config(0))
    b = _run(tmp_path, "b", [0.9, 0.9, 0.8], config={**_config(1), "model": {"init_args": {"lr": 0.01}}})
    with pytest.raises(ValueError, match=r"runs of different configurations cannot be aggregated: .* differ in"
                                         r" \['model.init_args.lr'\] \(model.init_args.lr: 0.1 vs 0.01\)"):
        read_runs([a, b])
    c = _run(tmp_path, "c", [0.9, 0.9, 0.8])
    with pytest.raises(ValueError, match=rf"\[{c!r}\] hold no config.yaml while {a!r} does"):
        read_runs([a, c])
    d = _run(tmp_path, "d", [0.9, 0.9, 0.8], densities=[1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match=r"round 2 has density 0.25 in .* and 0.2 in"):
        read_runs([c, d])


def test_a_run_dir_without_history(tmp_path):
    a = _run(tmp_path, "a", [0.9, 0.9, 0.8])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no IMP history in '{tmp_path / 'empty'}'"):
        read_runs([a, str(tmp_path / "empty")])


def test_a_metric_some_record_lacks(tmp_path):
    run = _run(tmp_path, "a", [0.9, 0.9, 0.8], controls={"reinit": {1: {3: 0.8}}})
    with pytest.raises(ValueError, match=r"a', round 0 has no final 'val_f1'; its metrics are"
                                         r" \['val_acc', 'val_loss'\]"):
        aggregate(read_runs([run]), "val_f1")


def test_the_plot_shows_each_curve_with_its_band_and_the_matching_region(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.collections import PolyCollection

    from lt_lightning.reporting.plots import plot_verdicts

    runs = [_run(tmp_path, name, accs, controls={"reinit": {1: {9: c1}, 2: {9: c2}}})
            for name, accs, c1, c2 in [("a", [0.90, 0.91, 0.85], 0.87, 0.80), ("b", [0.92, 0.93, 0.84], 0.89, 0.79),
                                       ("c", [0.91, 0.92, 0.86], 0.90, 0.81)]]
    result = aggregate(read_runs(runs), "val_acc")
    (ax,) = plot_verdicts(result).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["ticket"].get_xdata()) == [50.0, 25.0]
    assert list(lines["ticket"].get_ydata()) == pytest.approx([0.92, 0.85])
    assert list(lines["reinit"].get_ydata()) == pytest.approx([(0.87 + 0.89 + 0.90) / 3, 0.80])
    assert lines["dense (round 0)"].get_ydata()[0] == pytest.approx(0.91)
    assert lines["matching margin (0.002)"].get_ydata()[0] == pytest.approx(0.908)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # ticket and reinit, each with its interval
    low, high = bands[0].get_paths()[0].vertices[:, 1].min(), bands[0].get_paths()[0].vertices[:, 1].max()
    assert (low, high) == pytest.approx((result.rows[1]["ticket_ci_low"], result.rows[0]["ticket_ci_high"]))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ticket matching" in legend  # round 1 only: one shaded span
    left, right = ax.get_xlim()
    assert ax.get_xscale() == "log" and left > 50 > 25 > right

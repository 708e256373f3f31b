import json

import pytest

from lt_lightning.records import RoundRecord
from lt_lightning.reporting.summary import accuracy_metric, load_history, markdown_report, markdown_table, round_table

HISTORY = [
    {"round": 0, "density": 1.0, "layer_density": {"fc.weight": 1.0}, "final": {"val_acc": 0.91234, "val_loss": 0.3},
     "best": {"val_acc": 0.92, "val_loss": 0.28}, "monitor": "val_loss", "best_step": 40, "mask_overlap": None,
     "distance_from_rewind": 0.5, "wall_time_s": 1.5, "ticket": None},
    {"round": 1, "density": 0.8, "layer_density": {"fc.weight": 0.8}, "final": {"val_acc": 0.93, "train_acc": 0.99},
     "best": {"val_acc": 0.94}, "monitor": "val_loss", "best_step": 38, "mask_overlap": 0.8,
     "distance_from_rewind": 0.61, "wall_time_s": 1.25, "ticket": "tickets/round_01.pt"},
]


def _write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_history_reads_the_callbacks_file(tmp_path):
    _write(tmp_path / "imp_history.json", HISTORY)
    assert load_history(tmp_path) == [RoundRecord.from_dict(h) for h in HISTORY]
    assert [dict(r) for r in load_history(tmp_path)] == [{**RoundRecord(0, 0.0).to_dict(), **h} for h in HISTORY]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not readable JSON"),
        ([], "holds no rounds"),
        ({"round": 0}, "holds no rounds"),
        ([{"round": 0, "final": {}}], r"round record 0 lacks \['density'\]"),
        ([{"round": 0, "density": 1.0, "acc": 0.5}], r"round record 0 .* has unknown keys \['acc'\]"),
    ],
)
def test_load_history_names_the_file_and_what_is_wrong(tmp_path, content, expected):
    path = _write(tmp_path / "imp_history.json", content)
    with pytest.raises(ValueError, match=expected) as err:
        load_history(tmp_path)
    assert str(path) in str(err.value)


def test_load_history_without_a_history_points_to_the_ones_below(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IMP history in .*expected .*imp_history.json") as err:
        load_history(tmp_path)
    assert "found it below" not in str(err.value)
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    _write(tmp_path / "lightning_logs" / "version_0" / "imp_history.json", HISTORY)
    with pytest.raises(FileNotFoundError, match="found it below: .*lightning_logs/version_0/imp_history.json"):
        load_history(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_history(tmp_path / "missing")


def test_accuracy_metric_prefers_the_monitor_then_validation_accuracy():
    assert accuracy_metric(HISTORY) == "val_acc"  # the monitor is a loss
    assert accuracy_metric([{**HISTORY[1], "monitor": "train_acc"}]) == "train_acc"
    assert accuracy_metric(HISTORY, "train_acc") == "train_acc"
    with pytest.raises(ValueError, match=r"metric 'top5' is not in the run's history; its metrics are \['train_acc'"):
        accuracy_metric(HISTORY, "top5")
    with pytest.raises(ValueError, match="no accuracy-like metric"):
        accuracy_metric([{"round": 0, "final": {"loss": 1.0}, "best": {}, "monitor": "val_loss"}])


def test_round_table_has_one_row_per_round_with_the_history_values():
    columns, rows = round_table(HISTORY)
    assert columns == ["round", "density", "weights_remaining_pct", "final/train_acc", "final/val_acc",
                       "final/val_loss", "best/val_acc", "best/val_loss", "best_step", "mask_overlap",
                       "distance_from_rewind", "wall_time_s"]
    assert rows == [
        [0, 1.0, 100.0, None, 0.91234, 0.3, 0.92, 0.28, 40, None, 0.5, 1.5],
        [1, 0.8, 80.0, 0.99, 0.93, None, 0.94, None, 38, 0.8, 0.61, 1.25],
    ]


def test_markdown_table_and_report():
    table = markdown_table(HISTORY).splitlines()
    assert table[0].startswith("| round | density | weights_remaining_pct | final/train_acc |")
    assert table[2] == "| 0 | 1 | 100 | n/a | 0.9123 | 0.3 | 0.92 | 0.28 | 40 | n/a | 0.5 | 1.5 |"
    assert table[3] == "| 1 | 0.8 | 80 | 0.99 | 0.93 | n/a | 0.94 | n/a | 38 | 0.8 | 0.61 | 1.25 |"
    page = markdown_report(HISTORY, "IMP run x", images=["acc.png"])
    assert page.startswith("# IMP run x\n")
    assert "- final val_acc: dense 0.9123, last round 0.93" in page
    assert "\n".join(table) in page and page.endswith("![acc](acc.png)\n")

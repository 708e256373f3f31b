"""Round records, histories, results and the metric tracker on their own."""

import json
import math

import pytest

from lt_lightning.records import (
    MetricTracker,
    RoundRecord,
    history_run,
    load_history,
    read_history,
    read_result,
    write_history,
    write_result,
)


def test_record_reads_as_a_mapping_of_all_its_fields():
    r = RoundRecord(round=2, density=0.64, final={"val_acc": 0.8}, best_step=7)
    assert dict(r) == r.to_dict() and len(r) == len(r.to_dict())
    assert r["best_step"] == 7
    with pytest.raises(KeyError):
        r["accuracy"]


@pytest.mark.parametrize("data, match", [({"round": 0}, "lacks"), ({"round": 0, "density": 1.0, "acc": 1}, "unknown"),
                                         ([1, 2], "not a mapping")])
def test_from_dict_names_what_is_wrong(data, match):
    with pytest.raises(ValueError, match=match):
        RoundRecord.from_dict(data, where="here")


def test_history_round_trip_keeps_the_owning_run(tmp_path):
    history = [RoundRecord(round=0, density=1.0), RoundRecord(round=1, density=0.8, stopped_early=True)]
    write_history(tmp_path / "imp_history.json", history, run="run-1")
    assert read_history(tmp_path / "imp_history.json") == history
    assert load_history(tmp_path) == history
    assert history_run(tmp_path / "imp_history.json") == "run-1"
    assert not list(tmp_path.glob(".*"))  # the atomic write leaves no temporary file


def test_history_of_version_0_1_is_a_plain_list(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps([{"round": 0, "density": 1.0}]))
    assert read_history(tmp_path / "h.json")[0].density == 1.0
    assert history_run(tmp_path / "h.json") is None


@pytest.mark.parametrize("content, match", [("{", "not readable JSON"), ("[]", "holds no rounds"),
                                            ('[{"round": 0}]', "round record 0")])
def test_bad_history_is_refused_naming_the_file(tmp_path, content, match):
    (tmp_path / "h.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_history(tmp_path / "h.json")


def test_load_history_points_to_a_history_found_below(tmp_path):
    (tmp_path / "version_0").mkdir()
    write_history(tmp_path / "version_0" / "imp_history.json", [RoundRecord(round=0, density=1.0)])
    with pytest.raises(FileNotFoundError, match="version_0"):
        load_history(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_history(tmp_path / "missing")


def test_result_round_trip_and_wrong_format(tmp_path):
    write_result(tmp_path / "r.json", RoundRecord(round=1, density=0.5), {"control": "reinit", "seed": 3})
    record, metadata = read_result(tmp_path / "r.json")
    assert record.density == 0.5 and metadata == {"control": "reinit", "seed": 3}
    write_history(tmp_path / "h.json", [record])
    with pytest.raises(ValueError, match="not a training result"):
        read_result(tmp_path / "h.json")


def test_tracker_keeps_best_in_each_direction_and_ignores_nan():
    t = MetricTracker(monitor="val_loss", mode="min", modes={"val_err": "max"})
    t.observe({"val_loss": 0.5, "val_err": 0.1, "val_acc": 0.7}, step=1)
    t.observe({"val_loss": 0.3, "val_err": 0.2, "val_acc": math.nan}, step=2)
    t.observe({"val_loss": 0.4, "val_err": 0.05, "val_acc": 0.6}, step=3)
    assert t.final == {"val_loss": 0.4, "val_err": 0.05, "val_acc": 0.6}
    assert t.best == {"val_loss": 0.3, "val_err": 0.2, "val_acc": 0.7}
    assert t.best_step == 2
    state = t.state_dict()
    t.reset()
    assert (t.final, t.best, t.best_step) == ({}, {}, None)
    t.load_state_dict(state)
    assert t.best_step == 2 and t.best["val_loss"] == 0.3


@pytest.mark.parametrize("kwargs", [{"mode": "up"}, {"modes": ["val_acc"]}, {"modes": {"val_acc": "high"}}])
def test_tracker_refuses_bad_directions(kwargs):
    with pytest.raises(ValueError, match="not allowed"):
        MetricTracker(monitor="val_acc", **kwargs)

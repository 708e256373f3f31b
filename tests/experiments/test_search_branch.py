"""The IMP runs `lt-lightning rewind-search --imp` trains are runs like any other: `lt-lightning branch` trains the
controls of their tickets, and running the search again leaves them as they are."""

from __future__ import annotations

import os

import yaml
from conftest import run_cli as _main

from lt_lightning.records import read_result

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")


def test_branch_trains_controls_of_a_rewind_search_imp_run(tmp_path, capsys):
    out = tmp_path / "search"
    search = ["rewind-search", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"), "--steps", "2", "--imp",
              "--points", "3", "--out", str(out)]
    assert _main(search) == 0
    run = out / "imp" / "step_2it"
    with open(run / "config.yaml") as f:
        saved = f.read()
    assert [c["class_path"] for c in yaml.safe_load(saved)["trainer"]["callbacks"]] == [
        "lt_lightning.RewindCallback", "lt_lightning.IMPCallback", "lightning.pytorch.callbacks.ModelCheckpoint"]
    capsys.readouterr()

    assert _main(["branch", str(run), "--control", "reinit", "shuffle_masks", "--rounds", "2"]) == 0, \
        capsys.readouterr().err
    for control in ("reinit", "shuffle_masks"):
        folder = run / "branches" / control / "round_02" / "seed_1"  # digits_smoke's seed_everything 0, + 1
        record, metadata = read_result(folder / "result.json")
        assert record.train_steps == 20 and metadata["control"] == control
        with open(folder / "branch.yaml") as f:
            callbacks = yaml.safe_load(f)["trainer"]["callbacks"]
        assert [c["class_path"] for c in callbacks] == [
            "lt_lightning.MaskingCallback", "lt_lightning.RecordCallback",
            "lightning.pytorch.callbacks.ModelCheckpoint"]  # the branch's own resume checkpoint, not the run's
        assert callbacks[-1]["init_args"]["dirpath"] == str(folder / "resume")

    capsys.readouterr()
    assert _main(search) == 0  # again: every training done before, the run's config kept
    assert "IMP rewound to 2it: done before" in capsys.readouterr().out
    with open(run / "config.yaml") as f:
        assert f.read() == saved

"""W&B views of an IMP run: a real offline run, read back from the files wandb wrote (no mocks)."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import struct
import sys
import zlib

import lightning.pytorch as pl
import pytest
from conftest import digits_model, make_trainer
from lightning.pytorch.loggers import CSVLogger

from lt_lightning import IMPCallback, RewindCallback
from lt_lightning.reporting.summary import round_table
from lt_lightning.reporting.wandb import log_round_to_wandb

wandb = pytest.importorskip("wandb")
from lightning.pytorch.loggers import WandbLogger  # noqa: E402
from wandb.proto.wandb_internal_pb2 import Record  # noqa: E402

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str) -> list[Record]:
    """The protobuf records of a ``run-*.wandb`` file.

    wandb >= 0.19 writes it from its Go core and ships no Python reader (``wandb.sdk.internal.datastore`` is gone):
    the format is LevelDB's log (32 KiB blocks of records: CRC-32 of type byte + data, length, type, data) after a
    7-byte ``:W&B`` header. CRCs are checked, so a misread fails here rather than in an assertion below.
    """
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} has no W&B header"
    records, chunks, i = [], [], _HEADER
    while i + _HEADER <= len(data):
        if _BLOCK - i % _BLOCK < _HEADER:  # a block's tail too short for a record header is zero padding
            i += _BLOCK - i % _BLOCK
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, i)
        chunk = data[i + _HEADER:i + _HEADER + length]
        i += _HEADER + length
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"{path}: bad CRC at byte {i}"
        chunks.append(chunk)
        if kind in (_FULL, _LAST):
            record = Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def _items(update) -> dict[str, object]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in update}


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
    # Keep wandb's staging copies, cache and settings inside the test's folder, not the home directory.
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_holds_round_metrics_table_plots_and_tickets(tmp_path, datamodule, offline_env):
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="lt-lightning-test")
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=str(tmp_path / "imp"))
    trainer = make_trainer(tmp_path, [RewindCallback(step="3it"), imp], max_epochs=1, logger=logger,
                           limit_train_batches=8, limit_val_batches=2)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), datamodule)
    logger.experiment.finish()
    wandb.teardown()  # waits for wandb's service process, which writes the run file, to finish writing it

    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = read_records(run_file)
    by_type: dict[str, list] = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        by_type.setdefault(kind, []).append(getattr(record, kind))
    assert "exit" in by_type, f"{run_file} is incomplete"

    # Round scalars are on the imp/round axis.
    steps = {m.name: m.step_metric for m in by_type["metric"] if m.step_metric}
    for name in ("imp/density", "imp/final/val_acc", "imp/best/val_loss", "imp/mask_overlap",
                 "imp/distance_from_rewind", "imp/layer_density/model.out.weight"):
        assert steps[name] == "imp/round", name

    # Every round's scalars are in the run's history, at that round.
    rows = [_items(h.item) for h in by_type["history"]]
    for record in imp.history:
        logged = [row for row in rows if row.get("imp/round") == record["round"] and "imp/final/val_acc" in row]
        assert logged, f"round {record['round']} scalars missing"
        assert logged[-1]["imp/final/val_acc"] == pytest.approx(record["final"]["val_acc"])
        assert logged[-1]["imp/density"] == pytest.approx(record["density"])

    # On the round axis, every density row is the density of that round (also the rows logged at a round's start).
    on_axis = [(int(row["imp/round"]), row["imp/density"]) for row in rows
               if "imp/density" in row and "imp/round" in row]
    assert {r for r, _ in on_axis} == {0, 1, 2}
    assert all(density == pytest.approx(imp.history[r]["density"]) for r, density in on_axis)

    # The last logged round table holds one row per round, the values of the history.
    last = [row for row in rows if "imp/rounds/path" in row][-1]
    run_dir = os.path.dirname(run_file)
    with open(os.path.join(run_dir, "files", last["imp/rounds/path"])) as f:
        table = json.load(f)
    columns, expected = round_table([r.to_dict() for r in imp.history])
    assert table["columns"] == columns
    assert len(table["data"]) == 3
    for got, want in zip(table["data"], expected):
        assert got == [w if w is None else pytest.approx(w) for w in want]
    # The plots are custom charts over that table and the per-layer density table.
    charts = {item.nested_key[-1]: json.loads(item.value_json) for c in by_type["config"] for item in c.update
              if list(item.nested_key[:2]) == ["_wandb", "visualize"]}
    accuracy = charts["imp/plots/accuracy_vs_weights_remaining"]["panel_config"]["fieldSettings"]
    assert accuracy == {"x": "weights_remaining_pct", "y": "final/val_acc", "stroke": None}
    layers = charts["imp/plots/layer_density"]["panel_config"]["fieldSettings"]
    assert layers == {"x": "round", "y": "density", "stroke": "layer"}

    # Each round's ticket is an artifact of type "ticket" whose metadata is the round record.
    tickets = [a for a in by_type["artifact"] if a.type == "ticket"]
    assert [a.name for a in tickets] == [f"ticket-{logger.experiment.id}"] * 3
    for artifact, record in zip(tickets, imp.history):
        assert f"round-{record['round']:02d}" in artifact.aliases
        assert json.loads(artifact.metadata) == record.to_dict()
        (entry,) = artifact.manifest.contents
        with open(record["ticket"], "rb") as f:
            content = f.read()
        assert entry.path == os.path.basename(record["ticket"]) and entry.size == len(content)
        assert entry.digest == base64.b64encode(hashlib.md5(content).digest()).decode()
        assert entry.local_path.startswith(str(tmp_path))
        with open(entry.local_path, "rb") as f:  # the staged copy that a later `wandb sync` uploads
            assert f.read() == content


def test_prefixed_logger_and_no_accuracy_to_plot(tmp_path, datamodule, offline_env):
    """Keys follow WandbLogger(prefix=...); without validation nothing is accuracy-like: no accuracy plot, no error."""
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="lt-lightning-test", prefix="exp")
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, save_tickets=False)
    trainer = make_trainer(tmp_path, [imp], max_steps=3, logger=logger, limit_val_batches=0)
    trainer.fit(digits_model(), datamodule)
    logger.experiment.finish()
    wandb.teardown()

    assert set(imp.history[1]["final"]) == {"train_loss"}
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = read_records(run_file)
    steps = {r.metric.name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert steps["exp-imp/density"] == "exp-imp/round" and steps["exp-imp/final/train_loss"] == "exp-imp/round"
    rows = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [row["exp-imp/rounds/nrows"] for row in rows if "exp-imp/rounds/nrows" in row] == [1, 2]
    charts = {item.nested_key[-1] for r in records if r.WhichOneof("record_type") == "config"
              for item in r.config.update if list(item.nested_key[:2]) == ["_wandb", "visualize"]}
    assert charts == {"exp-imp/plots/layer_density"}


def test_no_wandb_import_without_a_wandb_logger(tmp_path, monkeypatch):
    """wandb is an optional extra: with other loggers the W&B views neither import it nor fail."""
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises ImportError
    trainer = pl.Trainer(logger=CSVLogger(str(tmp_path)), default_root_dir=str(tmp_path))
    history = [{"round": 0, "density": 1.0, "layer_density": {}, "final": {"val_acc": 0.5}, "best": {},
                "monitor": "val_loss", "ticket": None}]
    log_round_to_wandb(trainer, history)
    with pytest.raises(ImportError):
        import wandb as _  # noqa: F401  # the block above is effective

import logging

import lightning.pytorch as pl
import pytest
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from lt_lightning import IMPCallback, RewindCallback


class BarProbe(Callback):
    """What the progress bar would show, read at every training batch through the bar's own ``get_metrics``."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics = trainer.progress_bar_callback.get_metrics(trainer, pl_module)
        self.seen.append((trainer.global_step, metrics.get("round"), metrics.get("density")))


def _fit(tmp_path, datamodule, bar):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, save_tickets=False)
    probe = BarProbe()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=6, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                         callbacks=[RewindCallback(step="2it"), imp, bar, probe])
    trainer.fit(digits_model(), datamodule)
    return imp, probe


def _expected(imp):
    # Rounds of 6 steps, then 4 (rewound to step 2): the bar shows each round from its first batch.
    density = {h["round"]: f"{h['density']:.3g}" for h in imp.history}
    return [(step, f"{r}/2", density[r]) for r, steps in ((0, range(1, 7)), (1, range(7, 11)), (2, range(11, 15)))
            for step in steps]


def test_tqdm_bar_shows_round_and_density(tmp_path, datamodule, capsys):
    imp, probe = _fit(tmp_path, datamodule, TQDMProgressBar())
    assert probe.seen == _expected(imp)
    out = capsys.readouterr().out
    assert "round=0/2, density=1" in out and "round=2/2, density=0.25" in out
    # Shown through the bar only: not a logged metric, so not in callback_metrics nor in the round records.
    assert all("round" not in h["final"] and "density" not in h["final"] for h in imp.history)


def test_rich_bar_shows_round_and_density(tmp_path, datamodule):
    pytest.importorskip("rich")
    from lightning.pytorch.callbacks import RichProgressBar

    imp, probe = _fit(tmp_path, datamodule, RichProgressBar())
    assert probe.seen == _expected(imp)


def test_one_line_per_round_end(tmp_path, datamodule, caplog):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        imp = IMPCallback(rounds=2, pruning_fraction=0.5, monitor="val_acc", mode="max", save_tickets=False)
        make_trainer(tmp_path, [imp], max_steps=4, limit_val_batches=1).fit(digits_model(), datamodule)
    lines = [r.getMessage() for r in caplog.records if "done:" in r.getMessage()]
    assert len(lines) == 3
    for line, record in zip(lines, imp.history):
        assert line.startswith(f"lt-lightning: round {record['round']}/2 done: density {record['density']:.4g} (")
        assert f"val_acc final {record['final']['val_acc']:.4g}, best {record['best']['val_acc']:.4g}" in line
        assert line.endswith(" s")

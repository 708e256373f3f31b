"""The reporting interface the core defines: the callbacks tell reporters about rounds and never import the
presentation layer; a user's reporter hears every round of a real fit."""

import subprocess
import sys

from conftest import digits_model, make_trainer

from lt_lightning import IMPCallback
from lt_lightning.reports import register_round_reporter, round_reporters, unregister_round_reporter


def test_callbacks_do_not_import_the_presentation_layer():
    code = ("import sys, lt_lightning.callbacks, lt_lightning.reports, lt_lightning.validation\n"
            "print(sorted(m for m in sys.modules if m.startswith('lt_lightning.reporting')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-500:]


def test_a_registered_reporter_hears_every_round(tmp_path, datamodule):
    class Heard:
        def __init__(self):
            self.started, self.finished = [], []

        def round_started(self, trainer, round_, rounds, density):
            self.started.append((round_, rounds, density))

        def round_finished(self, trainer, history, rounds):
            self.finished.append(history[-1]["round"])

    heard = register_round_reporter(Heard())
    try:
        imp = IMPCallback(rounds=2, pruning_fraction=0.5, save_tickets=False)
        make_trainer(tmp_path, [imp], max_epochs=None, max_steps=4).fit(digits_model(), datamodule)
    finally:
        unregister_round_reporter(heard)
    assert [r for r, _, _ in heard.started] == [0, 1, 2] and heard.finished == [0, 1, 2]
    assert [round(d, 2) for _, _, d in heard.started] == [1.0, 0.5, 0.25]
    assert type(round_reporters()[0]).__name__ == "LoggerReporter" and heard not in round_reporters()

"""lt-lightning report of a real IMP run states each round's ticket's exported size against dense float32."""

from __future__ import annotations

import os

import pytest
from conftest import run_cli

from lt_lightning.export import stored_bytes
from lt_lightning.layout import RunLayout
from lt_lightning.ticket import load_ticket

pytest.importorskip("matplotlib")
CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")


def test_report_of_an_imp_run_has_each_rounds_exported_size(tmp_path):
    assert run_cli(["fit", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"), "--seed_everything", "0",
                    "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar",
                    "false"]) == 0
    run = os.path.join(tmp_path, "lightning_logs", "version_0")
    assert run_cli(["report", run, "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    section = page[page.index("## Exported size of each round's ticket"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| round")]
    history = RunLayout(run).history()
    tickets = [r for r in history if os.path.exists(os.path.join(run, "tickets", f"round_{r.round:02d}.pt"))]
    assert len(rows) == len(tickets) >= 2
    for row, record in zip(rows, tickets):
        sizes = stored_bytes(load_ticket(os.path.join(run, "tickets", f"round_{record.round:02d}.pt")))
        assert row == (f"| {record.round} | {record.density:.4f} | {sizes['dense']:,} | {sizes['float32']:,} |"
                       f" {sizes['dense'] / sizes['float32']:.2f}x | {sizes['float16']:,} |"
                       f" {sizes['dense'] / sizes['float16']:.2f}x |")
    ratios = [float(row.split("|")[5].strip().rstrip("x")) for row in rows]
    assert ratios[-1] > ratios[0]  # the sparser the ticket, the smaller its export

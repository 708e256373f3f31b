"""What each round's ticket of an IMP run stores when exported, against the dense float32 model: a section of its
``report.md``. Sizes only, which need no timing (:func:`lt_lightning.export.stored_bytes`); how fast a ticket runs,
only ``lt-lightning ticket export`` measures (timing every round would make ``report`` slow)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from lt_lightning.export import stored_bytes
from lt_lightning.layout import RunLayout
from lt_lightning.records import RoundRecord
from lt_lightning.ticket import load_ticket


def ticket_sizes(run_dir: str, history: Sequence[RoundRecord]) -> list[dict[str, float]]:
    """Per round with a ticket on disk: its round, density and :func:`stored_bytes` (``float32``, ``float16``,
    ``dense``)."""
    rows = []
    for record in history:
        path = record.ticket if record.ticket and os.path.isabs(record.ticket) else RunLayout(run_dir).ticket(
            record.round)
        if os.path.exists(path):
            rows.append({"round": record.round, "density": record.density, **stored_bytes(load_ticket(path))})
    return rows


def markdown_ticket_sizes(run_dir: str, history: Sequence[RoundRecord]) -> str:
    """The section: a table of each round's ticket's stored bytes and ratio to dense float32; ``""`` if no round
    left a ticket."""
    rows = ticket_sizes(run_dir, history)
    if not rows:
        return ""
    lines = ["## Exported size of each round's ticket", "",
             "Tensor bytes an export stores (`lt-lightning ticket export`: masked weights packed, CSR indices in the"
             " smallest integer type), against the dense float32 model; the speed only an export measures.", "",
             "| round | density | dense float32 (bytes) | float32 values (bytes) | smaller | float16 values (bytes)"
             " | smaller |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['round']} | {r['density']:.4f} | {r['dense']:,} | {r['float32']:,} |"
              f" {r['dense'] / r['float32']:.2f}x | {r['float16']:,} | {r['dense'] / r['float16']:.2f}x |"
              for r in rows]
    return "\n".join(lines) + "\n"

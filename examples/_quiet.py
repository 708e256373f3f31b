"""Console set-up shared by the examples: torch threads, and Lightning's messages kept to what matters here."""

import logging
import warnings

import torch


def quiet(threads: int) -> None:
    """Use ``threads`` torch threads; keep Lightning's logs to warnings and drop advice that doesn't apply here."""
    torch.set_num_threads(threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Raising num_workers does not help in-memory datasets of a few thousand samples.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

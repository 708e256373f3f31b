"""Early-bird's rule: Hamming distance between consecutive masks, settled when a window of them stays below a
threshold."""

import pytest
import torch

from lt_lightning.dynamic import MaskSettling, hamming_distance
from lt_lightning.masks import Masks


def _masks(*rows):
    return Masks({"a": torch.tensor(rows[0], dtype=torch.bool), "b": torch.tensor(rows[1], dtype=torch.bool)})


def test_hamming_distance_counts_flipped_positions_over_all_layers():
    assert hamming_distance(_masks([1, 0, 0, 0], [1, 1]), _masks([0, 1, 0, 0], [1, 1])) == pytest.approx(2 / 6)
    assert hamming_distance(_masks([1, 0, 0, 0], [1, 1]), _masks([1, 0, 0, 0], [1, 1])) == 0.0
    with pytest.raises(ValueError, match="cover different parameters"):
        hamming_distance({"a": torch.ones(2, dtype=torch.bool)}, {"b": torch.ones(2, dtype=torch.bool)})


def test_settled_only_after_window_consecutive_small_distances():
    rule = MaskSettling(threshold=0.2, window=3)
    sequence = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0],
                [0, 0, 1, 0]]
    settled = []
    for row in sequence:
        rule.observe(_masks(row, [1, 0]))
        settled.append(rule.settled)
    # Distances: -, 2/6, 0, 0, 2/6, 0, 0, 0: the spike at the fifth check restarts the window.
    assert settled == [False, False, False, False, False, False, False, True]


def test_state_round_trip_continues_the_window():
    rule = MaskSettling(threshold=0.5, window=2)
    rule.observe(_masks([1, 0, 0, 0], [1, 0]))
    rule.observe(_masks([1, 0, 0, 0], [1, 0]))
    resumed = MaskSettling(threshold=0.5, window=2)
    resumed.load_state_dict(rule.state_dict())
    assert resumed.observe(_masks([1, 0, 0, 0], [1, 0])) == 0.0 and resumed.settled

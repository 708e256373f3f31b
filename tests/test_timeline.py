"""The round timeline on its own: lengths, early stops, resume through its state, and what it refuses."""

import pytest

from lt_lightning.timeline import RoundTimeline


def test_full_rounds_add_up_to_one_training_plus_rewound_remainders():
    t = RoundTimeline(train_steps=50, rewind_step=10, rounds=3)
    assert [t.length(r) for r in range(4)] == [50, 40, 40, 40]
    assert [t.first_step(r) for r in range(4)] == [0, 10, 10, 10]
    assert t.total_steps() == 50 + 3 * 40
    for r, start in enumerate((50, 90, 130), start=1):
        t.start_round(r, start)
        assert t.virtual_step(start) == 10 and t.round == r
    assert t.total_steps() == 170 and t.end(3) == 170


def test_early_stop_shortens_the_total_and_is_recorded_per_round():
    t = RoundTimeline(train_steps=50, rewind_step=0, rounds=2)
    t.start_round(1, 30)  # round 0 stopped at step 30
    assert t.stopped_step(0) == 30
    assert t.total_steps() == 30 + 50 + 50


def test_rounds_must_start_in_order_and_not_before_the_last_start():
    t = RoundTimeline(train_steps=20, rewind_step=5, rounds=2)
    with pytest.raises(ValueError, match="round 2 cannot start"):
        t.start_round(2, 20)
    t.start_round(1, 20)
    with pytest.raises(ValueError, match="cannot start at global step 10"):
        t.start_round(2, 10)


@pytest.mark.parametrize("rewind_step", [-1, 20, 25])
def test_rewind_step_outside_one_training_is_refused(rewind_step):
    with pytest.raises(ValueError, match="allowed: 0 to 19"):
        RoundTimeline(train_steps=20, rewind_step=rewind_step, rounds=1)


def test_state_dict_rebuilds_an_equal_timeline():
    t = RoundTimeline(train_steps=20, rewind_step=5, rounds=2)
    t.start_round(1, 17)
    again = RoundTimeline(**t.state_dict())
    assert again == t and again.starts is not t.starts
    assert again.virtual_step(20) == t.virtual_step(20) == 8


def test_epochs_left_counts_the_partial_epoch_after_a_mid_epoch_rewind():
    # 10 steps in epochs of 4: 3 epochs per training; rewound to 5 (inside epoch 1), each later round trains 2 epochs.
    t = RoundTimeline(train_steps=10, rewind_step=5, rounds=1)
    assert t.epochs_left(0, steps_per_epoch=4) == 3 + 2
    t.start_round(1, 10)
    assert t.epochs_left(10, steps_per_epoch=4) == 2

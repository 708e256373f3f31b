"""The round timeline of an IMP run inside one fit: where each round starts and ends, in optimizer steps.

One *training* is ``L`` optimizer steps (what the Trainer is configured for); rounds after the first rewind to step
``k`` and train the ``L - k`` steps that round 0 ran after ``k``. A round may end early (early stopping), so the
timeline keeps the global step at which each round started rather than deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RoundTimeline:
    """Global steps of the rounds of one fit.

    >>> t = RoundTimeline(train_steps=100, rewind_step=20, rounds=2)
    >>> t.end(0), t.total_steps()
    (100, 260)
    >>> t.start_round(1, 100)     # round 1 starts at global step 100, at step 20 of one training
    >>> t.virtual_step(130)
    50
    >>> t.start_round(2, 150)     # round 1 stopped early after 50 of its 80 steps
    >>> t.total_steps(), t.stopped_step(1)
    (230, 70)
    """

    train_steps: int  # L
    rewind_step: int  # k
    rounds: int  # pruning rounds after the dense round 0
    starts: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not 0 <= self.rewind_step < self.train_steps:
            raise ValueError(f"rewind step {self.rewind_step} is not inside one training of {self.train_steps} steps;"
                             f" allowed: 0 to {self.train_steps - 1}.")

    @property
    def round(self) -> int:
        """The round under way."""
        return len(self.starts) - 1

    def length(self, round_: int) -> int:
        """Optimizer steps the round trains when it is not stopped early."""
        return self.train_steps if round_ == 0 else self.train_steps - self.rewind_step

    def first_step(self, round_: int) -> int:
        """The step of one training at which the round starts (0 for round 0, ``k`` after)."""
        return 0 if round_ == 0 else self.rewind_step

    def end(self, round_: int) -> int:
        """Global step at which the round ends if it runs its full length (it must have started)."""
        return self.starts[round_] + self.length(round_)

    def start_round(self, round_: int, global_step: int) -> None:
        """Record that ``round_`` (the next one) starts at ``global_step``."""
        if round_ != len(self.starts) or global_step < self.starts[-1]:
            raise ValueError(f"round {round_} cannot start at global step {global_step}; the timeline is at round"
                             f" {self.round}, which started at {self.starts[-1]}.")
        self.starts.append(global_step)

    def total_steps(self) -> int:
        """Global step at which the fit ends: the current round's full end plus the remaining rounds."""
        return self.end(self.round) + (self.rounds - self.round) * self.length(1)

    def virtual_step(self, global_step: int) -> int:
        """The step of one training that ``global_step`` stands for in the current round."""
        return self.first_step(self.round) + global_step - self.starts[-1]

    def stopped_step(self, round_: int) -> int:
        """The step of one training at which a finished round ended (``L`` unless it stopped early)."""
        return self.first_step(round_) + self.starts[round_ + 1] - self.starts[round_]

    def epochs_left(self, global_step: int, steps_per_epoch: int) -> int:
        """Epochs from the one that holds ``global_step`` to the end of the fit, when each round ends its last epoch
        and its epochs line up with one training's (a round rewound to step ``k`` mid-epoch first trains the rest
        of that epoch).

        >>> RoundTimeline(train_steps=10, rewind_step=5, rounds=2).epochs_left(0, steps_per_epoch=4)
        7
        """
        per_training = -(-self.train_steps // steps_per_epoch)
        current = per_training - self.virtual_step(global_step) // steps_per_epoch
        return current + (self.rounds - self.round) * (per_training - self.rewind_step // steps_per_epoch)

    def state_dict(self) -> dict[str, object]:
        return {"train_steps": self.train_steps, "rewind_step": self.rewind_step, "rounds": self.rounds,
                "starts": list(self.starts)}

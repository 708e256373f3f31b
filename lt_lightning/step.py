"""Training-time points: ``500`` or ``"500it"`` (optimizer steps), ``"2ep"`` (epochs), ``"1ep50it"``.

A :class:`Step` stays symbolic until the number of optimizer steps per epoch is known (in Lightning, from
``on_train_start`` on); :meth:`Step.to_steps` then turns it into a count of optimizer steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

StepLike = Union[int, str, "Step"]

# No spaces inside (around is fine): "5 ep" or "5ep 3it" are refused rather than guessed at.
_PATTERN = re.compile(r"^(?:(\d+)ep)?(?:(\d+)it)?$")
_FORMS = "a non-negative int (optimizer steps) or a string like '500it', '2ep' or '1ep50it'"


@dataclass(frozen=True)
class Step:
    """A point in training: ``epochs`` whole epochs plus ``iterations`` optimizer steps.

    >>> Step.parse("1ep50it")
    Step(epochs=1, iterations=50)
    >>> Step.parse("2ep").to_steps(steps_per_epoch=100)
    200
    >>> Step.parse(0).to_steps(steps_per_epoch=100)
    0
    """

    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, value: StepLike) -> Step:
        """Read a step from an ``int``, a string or a :class:`Step`; raise ``ValueError`` naming the bad value."""
        if isinstance(value, Step):
            return value
        if isinstance(value, bool):  # bool is an int subclass; True is no step count
            raise ValueError(f"step={value!r} is not valid; expected {_FORMS}.")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"step={value!r} is negative; expected {_FORMS}.")
            return cls(iterations=value)
        if isinstance(value, str):
            value = value.strip()
            match = _PATTERN.match(value)
            if value.isdigit():
                return cls(iterations=int(value))
            if match is None or not any(match.groups()):
                raise ValueError(f"step={value!r} is malformed; expected {_FORMS}.")
            epochs, iterations = match.groups()
            return cls(epochs=int(epochs or 0), iterations=int(iterations or 0))
        raise ValueError(f"step={value!r} has type {type(value).__name__}; expected {_FORMS}.")

    def to_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps from the start of training to this point."""
        if self.epochs and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1 to place {self}.")
        return self.epochs * steps_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        return f"{self.epochs}ep" if self.epochs else f"{self.iterations}it"

"""The validation kit: every check names the value and what is allowed; one seed range for every callback."""

import pytest

from lt_lightning import (
    DataOrderCallback,
    IMPCallback,
    MaskingCallback,
    PruneAtInitCallback,
    RigLCallback,
    SETCallback,
    SupermaskCallback,
)
from lt_lightning.controls import make_control
from lt_lightning.validation import (
    SEED_RANGE,
    check_bool,
    check_density,
    check_fraction,
    check_int,
    check_seed,
    check_selection,
    check_step,
)

SEEDED = {
    "IMPCallback": lambda seed: IMPCallback(seed=seed),
    "PruneAtInitCallback": lambda seed: PruneAtInitCallback(seed=seed),
    "RigLCallback": lambda seed: RigLCallback(seed=seed),
    "SETCallback": lambda seed: SETCallback(seed=seed),
    "SupermaskCallback": lambda seed: SupermaskCallback(seed=seed),
    "MaskingCallback": lambda seed: MaskingCallback(ticket="t.pt", control="reinit", seed=seed),
    "DataOrderCallback": lambda seed: DataOrderCallback(seed=seed),
}


@pytest.mark.parametrize("name", list(SEEDED))
def test_one_seed_range_everywhere(name):
    SEEDED[name](0)
    SEEDED[name](SEED_RANGE - 1)
    for bad in (-1, SEED_RANGE, True, 1.0, "1"):
        with pytest.raises(ValueError, match=rf"seed={bad!r} is not allowed; expected an int in \[0, 2\*\*32\)"):
            SEEDED[name](bad)


def test_controls_take_the_same_seed_range():
    with pytest.raises(ValueError, match=r"seed=4294967296 is not allowed; expected an int in \[0, 2\*\*32\)"):
        make_control("reinit", None, seed=SEED_RANGE)


@pytest.mark.parametrize(("check", "value", "message"), [
    (lambda v: check_int("batches", v, minimum=1), 1.0, r"batches=1.0 is not allowed; expected an int >= 1\.$"),
    (lambda v: check_int("batches", v, minimum=1), True, r"batches=True is not allowed"),
    (lambda v: check_bool("stop", v), 1, r"stop=1 is not allowed; expected a bool\.$"),
    (lambda v: check_fraction("drop_fraction", v), 0, r"drop_fraction=0 is not allowed; expected a number strictly"),
    (lambda v: check_fraction("drop_fraction", v), "0.5", r"drop_fraction='0.5' is not allowed"),
    (lambda v: check_density("density", v), 1.5, r"density=1.5 is not allowed; a density is a fraction of weights kept"),
    (lambda v: check_seed("seed", v), None, r"seed=None is not allowed"),
    (lambda v: check_step("every", v, nonzero=True), 0, r"every=0 is not allowed; expected at least one optimizer step"),
    (lambda v: check_step("start", v), "5 ep", r"step='5 ep' is malformed; expected a non-negative int"),
    (lambda v: check_selection(include=v), "(", r"include='\(' is not a valid regex"),
    (lambda v: check_selection(types=v), ["Linear", 3], r"types=\['Linear', 3\] is not allowed; expected a list"),
])
def test_each_check_names_the_value_and_what_is_allowed(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value)


def test_good_values_come_back():
    assert check_int("n", 3) == 3 and check_bool("b", False) is False and check_fraction("f", 0.5) == 0.5
    assert check_density("d", 1) == 1.0 and check_seed("s", 7) == 7 and str(check_step("s", "1ep")) == "1ep"
    assert check_selection("a", None, ["Linear"], "b") == ("Linear",)

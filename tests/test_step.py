import pytest

from lt_lightning.step import Step


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, Step(0, 0)), (500, Step(0, 500)), ("500it", Step(0, 500)), ("2ep", Step(2, 0)), ("1ep50it", Step(1, 50)),
     ("  3ep ", Step(3, 0)), ("7", Step(0, 7))],
)
def test_parse(value, expected):
    assert Step.parse(value) == expected


def test_to_steps_and_str_round_trip():
    assert Step.parse("1ep50it").to_steps(steps_per_epoch=30) == 80
    for text in ("500it", "2ep", "1ep50it"):
        assert str(Step.parse(text)) == text


@pytest.mark.parametrize("bad", ["", "ep", "5 epochs", "1it2ep", "-3it", -1, 1.5, True, None, "2e"])
def test_malformed_steps_name_value_and_forms(bad):
    with pytest.raises(ValueError) as err:
        Step.parse(bad)
    assert repr(bad) in str(err.value) and "'500it'" in str(err.value)

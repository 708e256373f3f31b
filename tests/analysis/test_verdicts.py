"""Verdicts: matching / winning on hand-made results with known answers, the Student t functions, bad input."""

import json
import math

import pytest

from lt_lightning.analysis.verdicts import compare, lowest_matching_density, student_t_cdf, student_t_quantile


@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 2, 4.302653), (0.975, 4, 2.776445), (0.975, 29, 2.045230), (0.95, 1, 6.313752), (0.995, 10, 3.169273),
])
def test_t_quantiles_match_tables(p, df, expected):
    assert student_t_quantile(p, df) == pytest.approx(expected, abs=1e-6)
    assert student_t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-6)


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 1e4])
def test_t_cdf_matches_closed_forms(t):
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_cdf_table_value_and_inverse():
    assert student_t_cdf(2.0, 5) == pytest.approx(0.949030, abs=1e-6)
    assert student_t_cdf(-2.0, 5) == pytest.approx(1 - 0.949030, abs=1e-6)
    assert student_t_quantile(0.5, 3) == 0.0
    for df in (1, 2.5, 7, 200):
        assert student_t_cdf(student_t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-10)


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: student_t_quantile(1.0, 3), "p=1.0 is not allowed"),
    (lambda: student_t_quantile(0.9, 0), "df=0 is not allowed"),
    (lambda: student_t_cdf(1.0, -1), "df=-1 is not allowed"),
])
def test_t_errors(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_one_seed_compares_the_values():
    rows = compare(dense=[0.98], ticket={0.2: [0.977], 0.5: [0.979]},
                   controls={"reinit": {0.5: [0.97], 0.2: [0.977]}})
    assert [r["density"] for r in rows] == [0.5, 0.2]
    top, low = rows
    assert top["matching"] and top["controls"]["reinit"]["beats"] and top["winning"]  # 0.979 >= 0.978
    assert not low["matching"] and not low["controls"]["reinit"]["beats"] and low["winning"] is False  # a tie loses
    assert top["ticket_std"] is None and top["diff_dense_ci_high"] is None
    assert top["controls"]["reinit"]["p_value"] is None
    assert top["controls"]["reinit"]["diff_mean"] == pytest.approx(0.009)
    assert lowest_matching_density(rows) == 0.5


def test_matching_by_the_upper_end_of_the_welch_interval():
    # dense has no spread: Welch's df is the ticket's n - 1 = 2 and the interval's half-width t_{.975,2} * s / sqrt(3).
    rows = compare(dense=[0.98, 0.98, 0.98], ticket={0.5: [0.97, 0.975, 0.98], 0.1: [0.95, 0.951, 0.949]})
    uncertain, worse = rows
    assert uncertain["diff_dense_mean"] == pytest.approx(-0.005)  # more than eps below dense on average ...
    assert uncertain["diff_dense_ci_high"] == pytest.approx(-0.005 + 4.302653 * 0.005 / math.sqrt(3), abs=1e-8)
    assert uncertain["matching"]  # ... but not shown to be: the interval reaches above -eps
    assert worse["diff_dense_ci_high"] == pytest.approx(-0.03 + 4.302653 * 0.001 / math.sqrt(3), abs=1e-8)
    assert not worse["matching"]
    assert uncertain["winning"] is None and uncertain["controls"] == {}  # no controls: no verdict
    assert lowest_matching_density(rows) == 0.5
    assert lowest_matching_density(rows[1:]) is None


def test_welch_interval_with_unequal_variances():
    # va = 5e-5 / 2, vb = 1e-4 / 3: df = (va + vb)^2 / (va^2 / 1 + vb^2 / 2) = 2.88235...
    row = compare(dense=[0.97, 0.98, 0.99], ticket={0.5: [0.96, 0.97]})[0]
    va, vb = 5e-5 / 2, 1e-4 / 3
    half = student_t_quantile(0.975, 2.882352941) * math.sqrt(va + vb)
    assert (row["diff_dense_ci_low"], row["diff_dense_ci_high"]) == pytest.approx((-0.015 - half, -0.015 + half))
    assert row["dense_ci_low"] == pytest.approx(0.98 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-8)
    assert row["matching"]


def test_winning_needs_a_significant_paired_win_over_every_control():
    # Paired differences 0.001, 0.002, 0.003: t = 2 sqrt(3) on 2 df, p = 0.5 - t / (2 sqrt(2 + t^2)) = 0.037090.
    dense = [0.98, 0.981, 0.982]
    ticket = {0.3: [0.981, 0.982, 0.983]}
    reinit = {"reinit": {0.3: [0.98, 0.98, 0.98]}}
    row = compare(dense, ticket, reinit)[0]
    entry = row["controls"]["reinit"]
    assert entry["p_value"] == pytest.approx(0.5 - 2 * math.sqrt(3) / (2 * math.sqrt(14)), abs=1e-9)
    assert entry["diff_mean"] == pytest.approx(0.002)
    assert entry["diff_ci_low"] == pytest.approx(0.002 - 4.302653 * 0.001 / math.sqrt(3), abs=1e-8)
    assert row["matching"] and entry["beats"] and row["winning"]
    assert compare(dense, ticket, reinit, confidence=0.97)[0]["winning"] is False  # p = 0.037 > 0.03
    noisy = compare(dense, ticket, {**reinit, "shuffle": {0.3: [0.985, 0.97, 0.98]}})[0]
    assert noisy["controls"]["shuffle"]["beats"] is False and noisy["winning"] is False


def test_beating_controls_without_matching_is_not_winning():
    row = compare([0.98, 0.981, 0.982], {0.05: [0.95, 0.96, 0.955]},
                  {"reinit": {0.05: [0.90, 0.91, 0.905]}})[0]
    assert row["controls"]["reinit"]["beats"] and not row["matching"] and row["winning"] is False


def test_identical_paired_differences():
    row = compare([0.98, 0.98], {0.5: [0.99, 0.99]}, {"a": {0.5: [0.98, 0.98]}, "b": {0.5: [0.99, 0.99]}})[0]
    assert row["controls"]["a"]["p_value"] == 0.0 and row["controls"]["a"]["beats"]
    assert row["controls"]["b"]["p_value"] == 0.5 and not row["controls"]["b"]["beats"]


def test_lower_is_better_flips_the_verdicts():
    rows = compare([0.02], {0.5: [0.021], 0.2: [0.023]}, {"reinit": {0.5: [0.03], 0.2: [0.01]}},
                   higher_is_better=False)
    assert rows[0]["matching"] and rows[0]["winning"]  # 0.021 <= 0.022, below the control's 0.03
    assert not rows[1]["matching"] and not rows[1]["controls"]["reinit"]["beats"]
    losses = compare([2.30, 2.31], {0.5: [2.20, 2.21]}, higher_is_better=False, eps=0.01)  # losses need no [0, 1]
    assert losses[0]["matching"] and losses[0]["diff_dense_mean"] == pytest.approx(-0.1)


def test_controls_at_some_densities_only_and_float_rounded_keys():
    rows = compare([0.98], {0.8**3: [0.98], 0.8: [0.98]}, {"reinit": {0.512: [0.97]}})
    assert rows[0]["controls"] == {} and rows[0]["winning"] is None
    assert rows[1]["density"] == 0.8**3 and rows[1]["winning"] is True


def test_learns_faster_from_early_stopping_steps():
    row = compare([0.98], {0.5: [0.98]}, {"reinit": {0.5: [0.97]}, "shuffle": {0.5: [0.97]}},
                  ticket_steps={0.5: [300]}, control_steps={"reinit": {0.5: [500]}})[0]
    assert row["ticket_steps_mean"] == 300
    assert row["controls"]["reinit"]["steps_mean"] == 500 and row["controls"]["reinit"]["learns_faster"] is True
    assert row["controls"]["shuffle"]["learns_faster"] is None
    slower = compare([0.98], {0.5: [0.98, 0.98]}, ticket_steps={0.5: [300, 600]})[0]
    assert slower["ticket_steps_mean"] == 450


def test_rows_are_plain_json_data():
    rows = compare([0.981, 0.979, 0.980], {0.21: [0.983, 0.981, 0.982], 0.05: [0.95, 0.96, 0.955]},
                   {"reinit": {0.21: [0.97, 0.968, 0.971], 0.05: [0.90, 0.91, 0.905]}},
                   ticket_steps={0.21: [1, 2, 3]}, control_steps={"reinit": {0.21: [4, 5, 6]}})
    assert json.loads(json.dumps(rows)) == rows
    assert {"density", "n", "ticket_mean", "ticket_ci_low", "dense_mean", "matching", "winning"} <= set(rows[0])


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"dense": []}, r"dense: expected a non-empty list"),
    ({"dense": ["0.98"]}, r"dense: '0.98' is not a finite number"),
    ({"dense": [True]}, r"dense: True is not a finite number"),
    ({"dense": [float("nan")]}, r"dense: nan is not a finite number"),
    ({"ticket": {0.5: [float("inf")]}}, r"ticket at density 0.5: inf is not a finite number"),
    ({"ticket": {0.5: [98.1]}}, r"98.1 is not an accuracy in \[0, 1\]"),
    ({"ticket": {}}, r"ticket: expected a non-empty mapping"),
    ({"ticket": {0.0: [0.9]}}, r"density 0.0 is not allowed; expected a number in \(0, 1\]"),
    ({"ticket": {1.5: [0.9]}}, r"density 1.5 is not allowed"),
    ({"ticket": {float("nan"): [0.9]}}, r"density nan is not allowed"),
    ({"controls": {"reinit": {0.5: [0.9, 0.9]}}}, r"at density 0.5, control 'reinit' has 2 seeds and the ticket 3"),
    ({"controls": {"reinit": {0.3: [0.9, 0.9, 0.9]}}}, r"controls 'reinit': density 0.3 is not one of the ticket's"),
    ({"eps": -0.1}, r"eps=-0.1 is not allowed"),
    ({"confidence": 1.0}, r"confidence=1.0 is not allowed"),
    ({"control_steps": {"reinit": {0.5: [1, 2, 3]}}}, r"control_steps needs ticket_steps"),
    ({"ticket_steps": {0.5: [1, -2, 3]}}, r"ticket_steps at density 0.5: -2 is not a step"),
    ({"ticket_steps": {0.5: [1]}, "control_steps": {"shuffle": {0.5: [1]}}}, r"control_steps names controls without"),
])
def test_bad_input_names_the_value(kwargs, needle):
    args = {"dense": [0.98, 0.97, 0.99], "ticket": {0.5: [0.98, 0.97, 0.99]}, **kwargs}
    with pytest.raises(ValueError, match=needle):
        compare(**args)

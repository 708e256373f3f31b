"""Gradual magnitude pruning on a real Trainer: the cubic schedule's densities at its events, nowhere else; pruned
weights stay pruned; logged; the final ticket written."""

import csv
import os

import pytest
import torch
from conformance.checks import assert_pruned_zero
from conftest import digits_model, make_trainer
from test_rigl import NAMES, SHAPES, Probe

from lt_lightning import GMPCallback, load_ticket
from lt_lightning.dynamic import gmp_density

NUMEL = {n: s[0] * s[1] for n, s in SHAPES.items()}


def test_densities_follow_the_cubic_schedule_at_events_only(tmp_path, datamodule):
    callback = GMPCallback(initial=1.0, final=0.1, start=5, end="1ep13it", every=10)  # 22 steps an epoch: end = 35
    probe = Probe(callback)
    trainer = make_trainer(tmp_path, [callback, probe], log_every_n_steps=1)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), datamodule)
    events = [15, 25, 35]
    assert [u["step"] for u in callback.updates] == events
    previous = None
    for step, masks, weights, _ in probe.steps:
        done = [t for t in events if t <= step]
        density = gmp_density(done[-1], 1.0, 0.1, 5, 35) if done else 1.0
        # layerwise: every layer at the schedule's density, rounded to whole weights.
        assert {n: int(m.sum()) for n, m in masks.items()} == {n: round(density * k) for n, k in NUMEL.items()}, step
        if previous is not None:
            assert (masks != previous) == (step in events), step
            assert all(bool((masks[n] <= previous[n]).all()) for n in NAMES), step  # nothing grows back
        assert_pruned_zero(weights, masks, step)
        previous = masks
    assert callback.masks.density() == pytest.approx(0.1, abs=1e-3) and trainer.global_step == 44
    for update in callback.updates:
        assert update["target_density"] == pytest.approx(gmp_density(update["step"], 1.0, 0.1, 5, 35))
        assert sum(update["grown"].values()) == 0 and sum(update["dropped"].values()) > 0
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("gmp/target_density")]
    assert [int(r["step"]) for r in rows] == events
    assert float(rows[0]["gmp/dropped/model.out.weight"]) == callback.updates[0]["dropped"]["model.out.weight"]
    ticket = load_ticket(os.path.join(trainer.log_dir, "tickets", "gmp_final.pt"))
    assert ticket.masks == callback.masks and ticket.metadata["method"] == "gmp"


def test_global_allocation_from_a_sparse_start_to_three_quarters_of_training(tmp_path, datamodule):
    callback = GMPCallback(initial=0.5, final=0.2, every=11, allocation="global")
    probe = Probe(callback)
    make_trainer(tmp_path, [callback, probe]).fit(digits_model(), datamodule)
    assert probe.steps[0][1].density() == pytest.approx(0.5, abs=1e-3)
    assert [u["step"] for u in callback.updates] == [11, 22, 33]  # end = int(0.75 * 44) = 33
    assert callback.masks.density() == pytest.approx(0.2, abs=1e-3)
    layer = callback.masks.layer_densities()
    assert max(layer.values()) - min(layer.values()) > 0.05  # one threshold over layers, not one density per layer
    assert torch.equal(probe.steps[-1][1]["model.out.weight"], callback.masks["model.out.weight"])


def test_another_schedule_by_name_and_an_unknown_one_refused(tmp_path, datamodule):
    callback = GMPCallback(initial=1.0, final=0.1, every=11, schedule="linear", save_ticket=False)
    make_trainer(tmp_path, [callback]).fit(digits_model(), datamodule)
    # end = 33: events at 11, 22, 33, a third of the way each on the straight line from 1.0 to 0.1.
    assert [u["target_density"] for u in callback.updates] == pytest.approx([0.7, 0.4, 0.1])
    assert callback.config()["schedule"] == "linear"
    with pytest.raises(ValueError, match=r"unknown schedule 'cubical'; known schedules: \['cubic', "):
        GMPCallback(schedule="cubical")

"""Bad input to RigL, SET, GMP and early-bird: a clear error naming the value and what is allowed, before the first
optimizer step, the module untouched."""

import pytest
import torch
from conftest import digits_model
from test_errors import _fit_raises

from lt_lightning import EarlyBirdCallback, GMPCallback, IMPCallback, RigLCallback, SETCallback
from lt_lightning.zoo import Classifier


@pytest.mark.parametrize("cls", [RigLCallback, SETCallback])
@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"update_every": 0}, r"update_every=0 is not allowed; expected an int >= 1"),
    ({"update_every": 2.5}, r"update_every=2.5 is not allowed"),
    ({"update_every": True}, r"update_every=True is not allowed"),
    ({"drop_fraction": 0.0}, r"drop_fraction=0.0 is not allowed; expected a number strictly between 0 and 1"),
    ({"drop_fraction": 1.0}, r"drop_fraction=1.0 is not allowed"),
    ({"stop": 0}, r"stop=0 is not allowed; expected a number strictly between 0 and 1"),
    ({"stop": 1.5}, r"stop=1.5 is not allowed"),
    ({"density": 0.0}, r"density=0.0 is not allowed; expected a number strictly between 0 and 1"),
    ({"density": 1.0}, r"density=1.0 is not allowed"),
    ({"density": -0.1}, r"density=-0.1 is not allowed"),
    ({"distribution": "ERK"}, r"distribution='ERK' is not allowed; expected one of \['erk', 'uniform'\]"),
    ({"seed": -1}, r"seed=-1 is not allowed; expected an int in \[0, 2\*\*32\)"),
    ({"keep_dense": "out["}, r"keep_dense='out\[' is not a valid regex"),
    ({"save_ticket": "yes"}, r"save_ticket='yes' is not allowed; expected a bool"),
    ({"allow_dense_layers": 1}, r"allow_dense_layers=1 is not allowed; expected a bool"),
])
def test_rigl_and_set_arguments_checked_at_construction(cls, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        cls(**kwargs)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"final": 0.0}, r"final=0.0 is not allowed; expected a number strictly between 0 and 1"),
    ({"final": 1.0}, r"final=1.0 is not allowed"),
    ({"initial": 1.5}, r"initial=1.5 is not allowed; a density is a fraction of weights kept, in \(0, 1\]"),
    ({"initial": 0.3, "final": 0.5}, r"final=0.5 is not below initial=0.3: gradual pruning lowers the density"),
    ({"every": 0}, r"every=0 is not allowed; expected at least one optimizer step"),
    ({"every": "0ep"}, r"every='0ep' is not allowed"),
    ({"start": "5 ep"}, r"step='5 ep' is malformed; expected a non-negative int .* '500it', '2ep' or '1ep50it'"),
    ({"allocation": "erk?"}, r"unknown allocation 'erk\?'; known allocations"),
])
def test_gmp_arguments_checked_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        GMPCallback(**kwargs)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"density": 1.0}, r"density=1.0 is not allowed; expected a number strictly between 0 and 1"),
    ({"density": 0.1, "distance": 0}, r"distance=0 is not allowed"),
    ({"density": 0.1, "window": 0}, r"window=0 is not allowed; expected an int >= 1"),
    ({"density": 0.1, "every": "0it"}, r"every='0it' is not allowed; expected at least one optimizer step"),
    ({"density": 0.1, "stop": "yes"}, r"stop='yes' is not allowed; expected a bool"),
])
def test_early_bird_arguments_checked_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        EarlyBirdCallback(**kwargs)


def test_erk_that_cannot_fit_a_layer(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [RigLCallback(density=0.5, allow_dense_layers=False)],
                r"density=0.5 is too high for distribution='erk': ERK would give layer 'model.out.weight' \(10x16\) a"
                r" density of 1.3, above 1. ERK fits every layer up to density=0.3846; use a lower density,"
                r" distribution='uniform', keep_dense= for that layer .*, or allow_dense_layers=True \(the"
                r" default")


def test_two_mask_changing_callbacks_are_refused_naming_both(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [RigLCallback(), GMPCallback()],
                r"RigLCallback sets the masks of this fit; the Trainer also has \['GMPCallback'\]")
    _fit_raises(tmp_path, datamodule, [IMPCallback(), SETCallback()],
                r"IMPCallback sets the masks of this fit; the Trainer also has \['SETCallback'\]")


class WithOptimizer(Classifier):
    def __init__(self, make):
        super().__init__("mlp", {"in_features": 64, "hidden": [32, 16], "num_classes": 10})
        self.make = make

    def configure_optimizers(self):
        return self.make(self.parameters())


@pytest.mark.parametrize(("make", "name"), [(lambda p: torch.optim.LBFGS(p), "LBFGS"),
                                            (lambda p: torch.optim.Rprop(p), "Rprop")])
def test_optimizers_whose_state_cannot_be_reset_are_refused_by_name(tmp_path, datamodule, make, name):
    _fit_raises(tmp_path, datamodule, [RigLCallback()],
                rf"RigLCallback starts grown weights with zero optimizer state, which {name} cannot do: .* Use an"
                r" optimizer with one state tensor per weight: SGD, Adam", model=WithOptimizer(make))


def test_stop_needs_a_finite_training(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [RigLCallback()], r"stop=0.75 is a fraction of training, which has no finite"
                r" length here: set max_steps", max_epochs=-1, max_steps=-1)


def test_gmp_steps_checked_against_the_training(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [GMPCallback(start="1ep", end=20)],
                r"GMPCallback prunes from start='1ep' \(22 steps\) to end='20it' \(20 steps\): end must come after"
                r" start")
    _fit_raises(tmp_path, datamodule, [GMPCallback(end="3ep")],
                r"end='3ep' \(66 steps\) is beyond the 44 optimizer steps of training")


@pytest.mark.parametrize(("kwargs", "overall"), [({"keep_dense": r"out\."}, 0.5 * 2560 / 2720 + 160 / 2720),
                                               ({"allow_dense_layers": True}, 0.5)])
def test_erk_fits_when_the_widest_layer_is_dense(tmp_path, datamodule, kwargs, overall):
    from conftest import make_trainer

    callback = RigLCallback(density=0.5, update_every=5, **kwargs)
    make_trainer(tmp_path, [callback], max_steps=20).fit(digits_model(), datamodule)
    densities = callback.masks.layer_densities()
    assert densities["model.out.weight"] == 1.0 and densities["model.hidden.0.weight"] < 0.5
    assert callback.masks.density() == pytest.approx(overall, abs=1e-3) and len(callback.updates) == 2  # 5, 10

"""Grown weights and their optimizer state start at zero in every torch optimizer that has a state per weight; the
others are refused by name."""

import pytest
import torch

from lt_lightning.dynamic import check_resettable, start_at_zero_

OPTIMIZERS = {
    "SGD": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "Adam": lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=0.1),
    "Adamax": lambda p: torch.optim.Adamax(p, lr=0.1),
    "NAdam": lambda p: torch.optim.NAdam(p, lr=0.1),
    "RAdam": lambda p: torch.optim.RAdam(p, lr=0.1),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=0.1, momentum=0.9, centered=True),
    "Adadelta": lambda p: torch.optim.Adadelta(p),
    "ASGD": lambda p: torch.optim.ASGD(p, lr=0.1),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_grown_weights_and_their_state_start_at_zero(name):
    weight = torch.nn.Parameter(torch.randn(4, 5, generator=torch.Generator().manual_seed(0)))
    optimizer = OPTIMIZERS[name]([weight])
    check_resettable(optimizer, "RigLCallback")
    for _ in range(2):
        weight.grad = torch.randn(4, 5)
        optimizer.step()
    grown = torch.zeros(4, 5, dtype=torch.bool)
    grown[1, 2] = grown[3, 0] = True
    start_at_zero_({"w": weight}, {"w": grown}, [optimizer])
    assert bool((weight[grown] == 0).all()) and bool((weight[~grown] != 0).all())
    per_weight = {k: v for k, v in optimizer.state[weight].items() if torch.is_tensor(v) and v.shape == weight.shape}
    assert per_weight, f"{name} keeps no per-weight state"
    for key, value in per_weight.items():
        assert bool((value[grown] == 0).all()), key
        assert bool((value[~grown] != 0).any()), key  # elsewhere the state is untouched


@pytest.mark.parametrize(("make", "needle"), [
    (lambda p: torch.optim.LBFGS(p), r"which LBFGS cannot do: its state is a history of updates flattened"),
    (lambda p: torch.optim.Rprop(p), r"which Rprop cannot do: its per-weight step sizes start at the learning rate"),
    (lambda p: torch.optim.Adafactor(p), r"which Adafactor cannot do: its second moments are factored"),
    (lambda p: torch.optim.Adagrad(p, initial_accumulator_value=0.1),
     r"which Adagrad cannot do: its sums start at initial_accumulator_value=0.1"),
])
def test_optimizers_whose_state_cannot_start_at_zero_are_refused_by_name(make, needle):
    with pytest.raises(ValueError, match=needle + r".*Use an optimizer with one state tensor per weight: SGD, Adam"):
        check_resettable(make([torch.nn.Parameter(torch.ones(2, 2))]), "RigLCallback")


class Factored(torch.optim.Optimizer):
    """An optimizer outside torch.optim whose state is not one value per weight."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["row"] = p.grad.sum(dim=1)


def test_state_of_another_shape_is_refused_at_the_update_naming_the_entry():
    weight = torch.nn.Parameter(torch.ones(3, 2))
    optimizer = Factored([weight])
    check_resettable(optimizer, "RigLCallback")  # unknown to the table: judged by its state
    weight.grad = torch.ones(3, 2)
    optimizer.step()
    with pytest.raises(ValueError, match=r"Factored keeps state 'row' of shape \(3,\) for 'w' of shape \(3, 2\)"):
        start_at_zero_({"w": weight}, {"w": torch.ones(3, 2, dtype=torch.bool)}, [optimizer])

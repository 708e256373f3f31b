"""Binary activations: modules swapped by type, sign forward with Bi-Real's gradient, functional calls caught."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lt_lightning.supermask import BinaryActivation, FunctionalActivationCheck, binarize_activations


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4), nn.LeakyReLU())

    def forward(self, x):
        return torch.tanh(self.body(x))


def test_every_activation_module_is_swapped_and_signs():
    model = Mixed()
    assert binarize_activations(model) == ["body.1", "body.3"]
    assert all(isinstance(model.body[i], BinaryActivation) for i in (1, 3))
    x = torch.tensor([[-3.0, -0.5, 0.5, 2.0]], requires_grad=True)
    y = BinaryActivation()(x)
    y.sum().backward()
    assert y.tolist() == [[-1.0, -1.0, 1.0, 1.0]] and x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_functional_calls_are_named_where_they_are_made():
    model = Mixed()
    binarize_activations(model)
    with pytest.raises(ValueError, match=r"calls torch.tanh as a function at .*test_supermask_activations.py:\d+ "
                                         r"\(forward\)"):
        with FunctionalActivationCheck():
            model(torch.ones(1, 4))
    with FunctionalActivationCheck():  # outside forward, other functions pass through
        assert F.linear(torch.ones(1, 2), torch.ones(3, 2)).shape == (1, 3)


def test_a_network_without_activation_modules_is_refused():
    with pytest.raises(ValueError, match="but Linear has none: its activations are function calls inside forward"):
        binarize_activations(nn.Linear(3, 3))

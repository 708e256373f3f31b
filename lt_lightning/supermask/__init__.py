"""Strong lottery tickets, pure torch: supermasks on frozen weights (edge-popup), multi-prize binary tickets (biprop),
binary activations, and pruning in another basis. Each piece chosen by name from a registry.

The Lightning side is :class:`lt_lightning.SupermaskCallback`; everything here also works in a plain PyTorch loop:

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
>>> SupermaskSpec(density=0.5, method="biprop", weight_init="signed_constant").apply(net)
['0.weight', '2.weight']
>>> optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)  # the scores only
>>> subnetwork_masks(net).density()
0.5
"""

from lt_lightning.supermask.activations import (
    ACTIVATION_TYPES,
    BinaryActivation,
    FunctionalActivationCheck,
    binarize_activations,
)
from lt_lightning.supermask.bases import (
    BASES,
    InBasis,
    export_weights,
    express_in_basis,
    register_basis,
    weights_in_a_basis,
)
from lt_lightning.supermask.binary import BinaryTicket, read_ticket
from lt_lightning.supermask.layers import (
    Supermask,
    SupermaskSpec,
    apply_supermask_ticket,
    frozen_tensors,
    kept_count,
    layer_statistics,
    progressive_density,
    set_density,
    subnetwork_masks,
    subnetwork_ticket,
    supermask_layers,
)
from lt_lightning.supermask.methods import METHODS, biprop_alpha, masked_weight, register_method
from lt_lightning.supermask.topk import TopK
from lt_lightning.supermask.weights import WEIGHT_INITS, register_weight_init

__all__ = [
    "ACTIVATION_TYPES",
    "BASES",
    "METHODS",
    "WEIGHT_INITS",
    "BinaryActivation",
    "BinaryTicket",
    "FunctionalActivationCheck",
    "InBasis",
    "Supermask",
    "SupermaskSpec",
    "TopK",
    "apply_supermask_ticket",
    "binarize_activations",
    "biprop_alpha",
    "export_weights",
    "express_in_basis",
    "frozen_tensors",
    "kept_count",
    "layer_statistics",
    "masked_weight",
    "progressive_density",
    "read_ticket",
    "register_basis",
    "register_method",
    "register_weight_init",
    "set_density",
    "subnetwork_masks",
    "subnetwork_ticket",
    "supermask_layers",
    "weights_in_a_basis",
]

"""Controls of a ticket: each control's invariants on a small conv + linear network, reproducibility, errors."""

import copy
import math

import pytest
import torch
from conformance.checks import assert_pruned_zero
from torch import nn

from lt_lightning.controls import CONTROLS, NEEDS_INIT, make_control, register_control
from lt_lightning.masks import Masks
from lt_lightning.pruning.allocation import smart_ratio_densities
from lt_lightning.ticket import Ticket

LAYERS = ("0.weight", "4.weight", "6.weight")
DENSITY = {"0.weight": 0.5, "4.weight": 0.2, "6.weight": 0.4}
RANDOM = ("shuffle_masks", "shuffle_weights", "random_ticket", "random_ticket_layerwise")


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 10))


def _rewind_state():
    state = _net(0).state_dict()
    state["1.running_mean"] += 0.5  # buffers that differ from a fresh module's, to see where they come from
    return state


def _ticket():
    """Exact layer densities (kept positions drawn at random) on the masked rewind weights."""
    state, gen, masks = _rewind_state(), torch.Generator().manual_seed(1), {}
    for name in LAYERS:
        numel = state[name].numel()
        flat = torch.zeros(numel, dtype=torch.bool)
        flat[torch.randperm(numel, generator=gen)[: round(DENSITY[name] * numel)]] = True
        masks[name] = flat.reshape(state[name].shape)
    masked = {k: v * masks[k] if k in masks else v.clone() for k, v in state.items()}
    return Ticket(Masks(masks), masked, {"round": 3, "layer_density": dict(DENSITY)})


def _init():
    return _net(7).state_dict()


def _kept(masks):
    return {n: int(m.sum()) for n, m in masks.items()}


def _make(name, seed=0, ticket=None, init="fresh"):
    return make_control(name, ticket or _ticket(), seed=seed, init=_init() if init == "fresh" else init)


def test_registry_holds_the_controls_and_which_need_init():
    assert set(CONTROLS) >= {"reinit", "keep_signs", *RANDOM}
    assert {"reinit", "shuffle_masks", "keep_signs", "random_ticket", "random_ticket_layerwise"} <= NEEDS_INIT
    assert "shuffle_weights" not in NEEDS_INIT


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_every_control_zeroes_pruned_weights_keeps_the_architecture_and_the_source(name):
    ticket = _ticket()
    before = copy.deepcopy(ticket)
    out = make_control(name, ticket, seed=3, init=_init())
    assert list(out.masks) == list(ticket.masks)
    for key, value in ticket.state_dict.items():
        assert out.state_dict[key].shape == value.shape and out.state_dict[key].dtype == value.dtype
    assert_pruned_zero(out.state_dict, out.masks)
    assert out.metadata == {"round": 3, "layer_density": DENSITY, "control": name, "control_seed": 3}
    out.metadata["layer_density"]["0.weight"] = 0.0  # a copy: the source ticket's metadata is untouched
    assert ticket.masks == before.masks and ticket.metadata == before.metadata
    assert all(torch.equal(ticket.state_dict[k], before.state_dict[k]) for k in before.state_dict)


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_same_seed_same_ticket(name):
    a, b = _make(name, seed=5), _make(name, seed=5)
    assert a.masks == b.masks
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


@pytest.mark.parametrize("name", RANDOM)
def test_another_seed_another_ticket(name):
    a, b = _make(name, seed=5), _make(name, seed=6)
    assert a.masks != b.masks or any(not torch.equal(a.state_dict[n], b.state_dict[n]) for n in LAYERS)


@pytest.mark.parametrize("name", ["reinit", "shuffle_masks", "shuffle_weights", "keep_signs",
                                  "random_ticket_layerwise"])
def test_layer_kept_counts_are_the_tickets(name):
    assert _kept(_make(name).masks) == _kept(_ticket().masks)


def test_reinit_is_the_masks_on_every_entry_of_init():
    ticket, init = _ticket(), _init()
    out = make_control("reinit", ticket, seed=0, init=init)
    assert out.masks == ticket.masks
    for key, value in init.items():
        expected = value * ticket.masks[key] if key in ticket.masks else value
        assert torch.equal(out.state_dict[key], expected), key


def test_shuffle_masks_moves_positions_and_takes_new_ones_from_init():
    ticket, init = _ticket(), _init()
    out = make_control("shuffle_masks", ticket, seed=0, init=init)
    for n in LAYERS:
        old, new = ticket.masks[n], out.masks[n]
        assert int(new.sum()) == int(old.sum()) and not torch.equal(new, old)
        w = out.state_dict[n]
        assert torch.equal(w[new & old], ticket.state_dict[n][new & old])  # kept by both: the ticket's weight
        assert torch.equal(w[new & ~old], init[n][new & ~old])  # newly kept: init's, never a zero of the ticket
        assert bool((w[new & ~old] != 0).all())
    for key in ("0.bias", "1.running_mean", "6.bias"):  # no mask: the ticket's
        assert torch.equal(out.state_dict[key], ticket.state_dict[key])


def test_shuffle_masks_on_the_unpruned_rewind_weights_is_su_et_al():
    rewind = _rewind_state()
    out = make_control("shuffle_masks", _ticket(), seed=0, init=rewind)
    for n in LAYERS:
        assert torch.equal(out.state_dict[n], rewind[n] * out.masks[n])


def test_shuffle_weights_permutes_kept_values_among_kept_positions():
    ticket = _ticket()
    out = make_control("shuffle_weights", ticket, seed=0)  # needs no init
    assert out.masks == ticket.masks
    for n in LAYERS:
        keep = ticket.masks[n]
        got, was = out.state_dict[n][keep], ticket.state_dict[n][keep]
        assert torch.equal(got.sort().values, was.sort().values)  # the same multiset of values
        assert not torch.equal(got, was)  # in other places
    for key in ("0.bias", "1.running_mean", "6.bias"):
        assert torch.equal(out.state_dict[key], ticket.state_dict[key])


def test_keep_signs_has_the_tickets_signs_and_inits_magnitudes():
    ticket, init = _ticket(), _init()
    kept = ticket.masks["4.weight"].reshape(-1).nonzero()[0].item()
    ticket.state_dict["4.weight"].view(-1)[kept] = 0.0  # a kept weight without a sign: init's sign
    out = make_control("keep_signs", ticket, seed=0, init=init)
    for n in LAYERS:
        keep = ticket.masks[n]
        w, t, i = out.state_dict[n][keep], ticket.state_dict[n][keep], init[n][keep]
        assert torch.equal(w.abs(), i.abs())
        signed = t != 0
        assert torch.equal(w[signed].sign(), t[signed].sign())
        assert torch.equal(w[~signed], i[~signed])
    assert out.state_dict["4.weight"].view(-1)[kept] == init["4.weight"].view(-1)[kept]
    assert torch.equal(out.state_dict["1.running_mean"], init["1.running_mean"])  # as reinit


def test_random_ticket_keeps_the_total_at_smart_ratio_layer_densities():
    ticket, init = _ticket(), _init()
    out = make_control("random_ticket", ticket, seed=0, init=init)
    assert out.masks.kept() == ticket.masks.kept()
    numel = {n: m.numel() for n, m in ticket.masks.items()}
    expected = smart_ratio_densities(numel, ticket.masks.density())
    for n, count in _kept(out.masks).items():
        assert abs(count - expected[n] * numel[n]) < 1, n
    assert _kept(out.masks) != _kept(ticket.masks)  # smart ratios are not the ticket's densities
    assert out.masks.layer_densities()["6.weight"] == pytest.approx(0.3, abs=1 / 320)  # the output layer's 30%
    for key, value in init.items():
        expected_value = value * out.masks[key] if key in out.masks else value
        assert torch.equal(out.state_dict[key], expected_value), key


def test_random_ticket_layerwise_draws_new_positions_on_init():
    ticket, init = _ticket(), _init()
    out = make_control("random_ticket_layerwise", ticket, seed=0, init=init)
    assert all(not torch.equal(out.masks[n], ticket.masks[n]) for n in LAYERS)
    for key, value in init.items():
        expected = value * out.masks[key] if key in out.masks else value
        assert torch.equal(out.state_dict[key], expected), key


def test_init_is_cast_to_the_tickets_dtypes():
    init = {k: v.double() if v.is_floating_point() else v for k, v in _init().items()}
    out = make_control("reinit", _ticket(), seed=0, init=init)
    assert out.state_dict["4.weight"].dtype == torch.float32


def test_a_new_control_is_one_function():
    @register_control("zero_biases")
    def _zero_biases(ticket, *, init, generator):
        return Ticket(ticket.masks, {k: v * 0 if k.endswith("bias") else v for k, v in ticket.state_dict.items()})

    try:
        out = make_control("zero_biases", _ticket(), seed=0)
        assert not bool(out.state_dict["0.bias"].any()) and out.metadata["control"] == "zero_biases"
        with pytest.raises(ValueError, match="a control named 'zero_biases' is already registered"):
            register_control("zero_biases")(_zero_biases)
    finally:
        del CONTROLS["zero_biases"]


def test_a_control_that_leaves_pruned_weights_is_refused():
    @register_control("unmasked")
    def _unmasked(ticket, *, init, generator):
        return Ticket(ticket.masks, {k: v + 1 for k, v in ticket.state_dict.items()})

    try:
        with pytest.raises(ValueError, match="control 'unmasked' returned weights of '0.weight'"):
            make_control("unmasked", _ticket(), seed=0)
    finally:
        del CONTROLS["unmasked"]


@pytest.mark.parametrize("seed", [True, 1.0, "1", None, -1, 2**64])
def test_seed_must_be_an_int(seed):
    with pytest.raises(ValueError, match=f"seed={seed!r} is not allowed"):
        make_control("shuffle_weights", _ticket(), seed=seed)


def test_unknown_control_lists_the_known_ones_sorted():
    with pytest.raises(ValueError, match=r"unknown control 'nope'; known controls: \['keep_signs', 'random_ticket',"):
        make_control("nope", _ticket(), seed=0)


@pytest.mark.parametrize("name", sorted(NEEDS_INIT))
def test_controls_that_need_init_say_so(name):
    with pytest.raises(ValueError, match=rf"control '{name}' takes weights from init: pass init=, the module's fresh"):
        make_control(name, _ticket(), seed=0)


def test_init_of_another_architecture_names_the_first_mismatch():
    init = _init()
    del init["1.running_var"]
    with pytest.raises(ValueError, match="init has no entry '1.running_var'"):
        make_control("reinit", _ticket(), seed=0, init=init)
    with pytest.raises(ValueError, match="init has an entry 'extra.weight'"):
        make_control("reinit", _ticket(), seed=0, init={**_init(), "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"init's '6.weight' has shape \(10, 33\) but the ticket's has \(10, 32\)"):
        make_control("reinit", _ticket(), seed=0, init={**_init(), "6.weight": torch.zeros(10, 33)})


def test_masks_must_name_weights_of_the_ticket():
    ticket = _ticket()
    del ticket.state_dict["6.weight"]
    with pytest.raises(ValueError, match="mask '6.weight' names no entry of the ticket's state_dict"):
        make_control("shuffle_weights", ticket, seed=0)


def test_densities_are_exact_for_odd_sizes():
    """A 3x7 layer at density 5/21: counts, not rounded densities, are kept."""
    lin = nn.Linear(7, 3)
    mask = torch.zeros(21, dtype=torch.bool)
    mask[[0, 4, 9, 13, 20]] = True
    ticket = Ticket(Masks({"weight": mask.reshape(3, 7)}), {k: v.detach() for k, v in lin.state_dict().items()})
    ticket.state_dict["weight"] = ticket.state_dict["weight"] * ticket.masks["weight"]
    for name in sorted(CONTROLS):
        out = make_control(name, ticket, seed=2, init=nn.Linear(7, 3).state_dict())
        assert out.masks.kept() == 5, name
        assert math.isclose(out.masks.density(), 5 / 21)

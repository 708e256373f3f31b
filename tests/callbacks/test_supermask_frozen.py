"""A supermask trains its scores and nothing else (issue 18 item 2): biases, norms, embeddings and the layers left out
stay bit for bit as they were, under weight decay and momentum, with gradients left from before the fit, on a small
HuggingFace BERT; ``train=`` lets named parameters train, and the start-up line says what trains."""

import logging

import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback
from tiny_bert import TinyBert
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lt_lightning import SupermaskCallback
from lt_lightning.supermask import SupermaskSpec, supermask_layers


class Before(Callback):
    """Every parameter as the fit starts (after the callback made the supermask layers)."""

    def on_train_start(self, trainer, pl_module):
        self.values = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def changed(model, before):
    return sorted(n for n, p in model.named_parameters() if not torch.equal(p, before.values[n]))


def scores(model):
    return sorted(f"{name.rpartition('.')[0]}.parametrizations.weight.0.scores" for name in supermask_layers(model))


def startup_line(caplog):
    return next(r.getMessage() for r in caplog.records if "lt-lightning: supermask" in r.getMessage())


def test_frozen_parameters_drop_gradients_left_from_before_in_a_plain_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    net(torch.randn(4, 8)).sum().backward()
    SupermaskSpec(density=0.5).apply(net)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    optimizer.step()  # before any zero_grad: an old gradient would move a bias or norm here
    net(torch.randn(4, 8)).square().sum().backward()
    optimizer.step()
    moved = sorted(n for n, p in net.named_parameters() if not torch.equal(p, before[n]))
    assert moved == ["0.parametrizations.weight.0.scores", "2.parametrizations.weight.0.scores"]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_only_scores_move_under_weight_decay_momentum_and_old_gradients(tmp_path, datamodule, optimizer, caplog):
    # The module's own optimizer over self.parameters(), unfiltered, with weight decay (and momentum for SGD).
    model = digits_model(optimizer=optimizer, lr=0.05, weight_decay=0.1, momentum=0.9)
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    nn.functional.cross_entropy(model(x), y).backward()  # gradients left from before the fit
    before = Before()
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [SupermaskCallback(density=0.3), before], max_steps=8).fit(model, datamodule)
    assert changed(model, before) == scores(model)  # biases and frozen weights bitwise unchanged
    assert all(p.grad is None for n, p in model.named_parameters() if not n.endswith("scores"))
    assert startup_line(caplog) == (
        "lt-lightning: supermask (edge_popup, density 0.3, layerwise) on 3 layers: 2,720 weights frozen"
        " (weight_init='module') and their 2,720 scores trained; nothing else trains (train=REGEX lets named"
        " parameters train); 58 other parameters frozen.")


def test_train_lets_named_parameters_train(tmp_path, datamodule, caplog):
    model, before = digits_model(optimizer="adamw", lr=0.05, weight_decay=0.1), Before()
    callback = SupermaskCallback(density=0.3, exclude=r"^model\.out\.", train=r"^model\.out\.|hidden\.0\.bias")
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [callback, before], max_steps=8).fit(model, datamodule)
    assert changed(model, before) == sorted(scores(model) + ["model.hidden.0.bias", "model.out.bias",
                                                             "model.out.weight"])
    assert callback.config()["train"] == callback.ticket().metadata["train"] == r"^model\.out\.|hidden\.0\.bias"
    assert startup_line(caplog).endswith(
        r"also trained, as train='^model\\.out\\.|hidden\\.0\\.bias' matches: 3 tensors, 202 parameters"
        " (model.hidden.0.bias, model.out.weight, model.out.bias); 16 other parameters frozen.")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"train": "bias("}, r"train='bias\(' is not a valid regex"),
])
def test_a_bad_train_regex_is_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupermaskCallback(**kwargs)


@pytest.mark.parametrize(("train", "message"), [
    (r"hidden\.0", r"train='hidden\\\\.0' matches model.hidden.0.weight, weights the supermask keeps frozen \(it"
                   r" trains their scores instead\)"),
    ("LayerNorm", r"train='LayerNorm' matches no parameter of Classifier outside the supermasked weights; they are:"
                  r" model.hidden.0.bias, model.hidden.1.bias, model.out.bias."),
])
def test_train_naming_supermasked_weights_or_nothing_is_refused_before_the_first_step(tmp_path, datamodule, train,
                                                                                      message):
    trainer = make_trainer(tmp_path, [SupermaskCallback(train=train)], max_steps=2)
    with pytest.raises(ValueError, match=message):
        trainer.fit(digits_model(), datamodule)
    assert trainer.global_step == 0


def tokens():
    """Sequences of 12 tokens; the label: whether token 3 occurs."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 40, (96, 12), generator=g)
    ids[:48, 5] = 3
    return DataLoader(TensorDataset(ids, (ids == 3).any(1).long()), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def test_bert_trains_only_scores_and_train_opens_named_ones(tmp_path, caplog):
    model, before = TinyBert(), Before()
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [SupermaskCallback(density=0.5), before], max_steps=6, logger=False).fit(
            model, tokens())
    assert len(supermask_layers(model)) == 14  # 6 Linear per block, the pooler and the classifier
    assert changed(model, before) == scores(model)  # embeddings, LayerNorms and biases did not move
    assert "nothing else trains" in startup_line(caplog)
    caplog.clear()

    model, before = TinyBert(), Before()
    callback = SupermaskCallback(density=0.5, exclude="classifier", train="classifier|LayerNorm")
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [callback, before], max_steps=6, logger=False).fit(model, tokens())
    opened = sorted(n for n, _ in model.named_parameters() if "classifier" in n or "LayerNorm" in n)
    assert len(opened) == 12 and changed(model, before) == sorted(scores(model) + opened)
    assert "also trained, as train='classifier|LayerNorm' matches: 12 tensors, 194 parameters" in startup_line(caplog)

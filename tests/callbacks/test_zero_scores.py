"""Layers whose scores are all zero: timm's ResNet-18 zero-initialises the last BatchNorm of every block
(``zero_init_last=True``), so SNIP, GraSP and SynFlow score 16 of its 21 prunable layers exactly zero. The weights
tied at the global threshold are drawn at random (seeded) across all those layers, never in layer order; a warning
names every such layer with the likely cause and remedy, and IMP tickets record them."""

import os
import re

import pytest
import torch
from conftest import digits_model, make_trainer
from torch.nn import functional as F

from lt_lightning import IMPCallback, PruneAtInitCallback, RewindCallback, load_ticket
from lt_lightning.masks import Masks, select_parameters
from lt_lightning.pruning import ScoreContext, prune
from lt_lightning.pruning.prune import TiedScoresWarning
from lt_lightning.zoo import Classifier

timm = pytest.importorskip("timm")


class TimmResNet(Classifier):
    """timm's ResNet-18 (its own defaults, zero_init_last=True) on the 8x8 digits as 1x8x8 images."""

    def __init__(self):
        super().__init__("mlp", {"in_features": 64, "hidden": [8], "num_classes": 10}, lr=0.01)
        self.model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)

    def forward(self, x):
        return self.model(x.view(-1, 1, 8, 8))


def _zeroed(model):
    """The convolutions inside each residual block: their output passes a BatchNorm whose scale is zero."""
    return [n for n in select_parameters(model.model) if re.fullmatch(r"layer\d\.\d\.conv\d\.weight", n)]


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_zero_scored_layers_are_named_and_share_the_kept_weights_in_proportion(tmp_path, datamodule, method):
    torch.manual_seed(0)
    model = TimmResNet()
    callback = PruneAtInitCallback(method=method, density=0.1, allocation="global", iterations=2)
    with pytest.warns(TiedScoresWarning) as caught:
        make_trainer(tmp_path, [callback], max_steps=1).fit(model, datamodule)
    zeroed = [f"model.{n}" for n in _zeroed(model)]
    assert len(zeroed) == 16 and callback.score_notes["all_zero_scores"] == zeroed
    message = next(str(w.message) for w in caught if w.category is TiedScoresWarning)
    assert f"the {method!r} scores of 16 of 21 prunable layers are all zero" in message
    assert all(repr(n) in message for n in zeroed)
    assert "zero_init_last=True" in message and "Remedy: initialise without the zeroed layers (timm: zero_init_last" \
                                                 "=False), or use a score that does not pass through them" in message
    densities = callback.masks.layer_densities()
    tied = [densities[n] for n in zeroed]
    # Before: layer order decided (layer1-2 dense, each layer4 conv one weight); now all in proportion.
    assert max(tied) - min(tied) < 0.03 and 0.03 < min(tied) and max(tied) < 0.15, densities


def test_the_draw_among_tied_weights_is_seeded():
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)
    names = select_parameters(net)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))

    def snip(seed):
        context = ScoreContext(net, Masks.dense(net, names), batches=[(x, y)],
                               loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                               generator=torch.Generator().manual_seed(seed))
        with pytest.warns(TiedScoresWarning):
            return prune(context, 0.1, score="snip")

    first, again, other = snip(0), snip(0), snip(1)
    assert first == again and not first == other
    assert first.kept() == other.kept() == round(0.1 * first.numel())
    layer = "layer4.1.conv2.weight"
    assert int(first[layer].sum()) == pytest.approx(int(other[layer].sum()), rel=0.05)  # as many, elsewhere


def test_scores_that_cannot_rank_any_weight_are_refused_before_training(tmp_path, datamodule):
    model = digits_model()
    with torch.no_grad():
        for name in ("model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"):
            model.get_parameter(name).zero_()
    trainer = make_trainer(tmp_path, [PruneAtInitCallback(method="magnitude", density=0.5)], max_steps=2)
    with pytest.raises(ValueError, match=r"scores of 3 of 3 prunable layers are all zero: .* Every prunable weight"
                                         r" scores the same, so the score cannot choose any"):
        trainer.fit(model, datamodule)
    assert trainer.global_step == 0


def test_imp_tickets_record_the_zero_scored_layers(tmp_path, datamodule):
    model = digits_model()
    frozen = model.get_parameter("model.hidden.1.weight")
    with torch.no_grad():
        frozen.zero_()
    frozen.requires_grad_(False)  # stays zero through the round: its magnitudes cannot rank it
    imp = IMPCallback(rounds=1, pruning_fraction=0.5)
    with pytest.warns(TiedScoresWarning, match=r"\['model.hidden.1.weight'\]. Likely cause: their weights are zero"):
        make_trainer(tmp_path, [RewindCallback(step=0), imp], max_steps=3).fit(model, datamodule)
    ticket = load_ticket(os.path.join(imp.history[1].ticket))
    assert ticket.metadata["all_zero_scores"] == ["model.hidden.1.weight"] and ticket.metadata["tied_scores"] == []

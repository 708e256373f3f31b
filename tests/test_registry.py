"""Registries by name, and what a registered function declares it needs: callbacks read the declaration and refuse
a score they cannot serve before any training, for built-in and user scores alike."""

import pytest
import torch
from conformance.checks import StepCounter
from conftest import digits_model, make_trainer

from lt_lightning import IMPCallback, PruneAtInitCallback
from lt_lightning.pruning import SCORES, register_score
from lt_lightning.registry import Registry


def test_needs_are_declared_from_the_registry_capabilities():
    reg = Registry("score", capabilities=("batches",))
    with pytest.raises(ValueError, match=r"needs=\['gpu'\] is not allowed for a score; a score may need \['batches'\]"):
        reg.register("x", needs=["gpu"])
    reg.register("plain")(len)
    assert reg.needs("plain") == frozenset()
    with pytest.raises(ValueError, match="unknown score 'nope'"):
        reg.needs("nope")
    assert SCORES.needs("snip") == {"batches"} and SCORES.needs("synflow") == {"example_input", "iterative"}
    assert SCORES.needs("magnitude") == frozenset()


@pytest.fixture
def taylor():
    """A user's data-driven score: |w * grad| on the batches it is given."""
    seen = {"batches": 0}

    @register_score("user_taylor", needs=["batches"])
    def _taylor(context):
        batches = list(context.batches)
        seen["batches"] += len(batches)
        weights = context.parameters()
        for batch in batches:
            grads = torch.autograd.grad(context.loss_fn(context.module, batch), list(weights.values()))
        return {n: (w * g).abs().detach() for (n, w), g in zip(weights.items(), grads)}

    yield seen
    del SCORES["user_taylor"]


def test_imp_refuses_a_user_data_score_in_init(taylor):
    with pytest.raises(ValueError, match=r"score='user_taylor' scores the network on data or inputs, which"
                                         r" IMPCallback does not give its scores: .*needing \['batches'\]"):
        IMPCallback(score="user_taylor")


def test_prune_at_init_gives_a_user_data_score_its_batches(tmp_path, datamodule, taylor):
    callback = PruneAtInitCallback(method="user_taylor", density=0.2, batches=2)
    make_trainer(tmp_path, [callback], max_epochs=None, max_steps=2).fit(digits_model(), datamodule)
    assert taylor["batches"] == 2 and callback.masks.density() == pytest.approx(0.2, abs=1e-3)


def test_prune_at_init_refuses_a_user_data_score_under_manual_optimization(tmp_path, datamodule, taylor):
    class Manual(type(digits_model())):
        def __init__(self):
            super().__init__("mlp", {"in_features": 64, "hidden": [32, 16], "num_classes": 10})
            self.automatic_optimization = False

    steps = StepCounter()
    trainer = make_trainer(tmp_path, [PruneAtInitCallback(method="user_taylor"), steps], max_steps=2)
    with pytest.raises(ValueError, match="method='user_taylor' scores with the loss of training_step"):
        trainer.fit(Manual(), datamodule)
    assert steps.steps == 0 and trainer.global_step == 0

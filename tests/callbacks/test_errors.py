"""Bad input: a clear error naming the value and what is allowed, raised before any training step, losing nothing."""

import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback

from lt_lightning import IMPCallback, MaskingCallback, RewindCallback, Ticket, load_ticket
from lt_lightning.masks import Masks
from lt_lightning.zoo import Classifier


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"pruning_fraction": 0.0}, r"pruning_fraction=0.0 is not allowed; expected a number strictly between 0 and 1"),
    ({"pruning_fraction": 1.0}, r"pruning_fraction=1.0 is not allowed"),
    ({"pruning_fraction": -0.2}, r"pruning_fraction=-0.2 is not allowed"),
    ({"rounds": 0}, r"rounds=0 is not allowed; expected an int >= 1"),
    ({"rounds": 2.5}, r"rounds=2.5 is not allowed"),
    ({"rounds": None}, r"needs rounds or target_density"),
    ({"target_density": 1.5}, r"target_density=1.5 is not allowed"),
    ({"reset": "rewnd"}, r"reset='rewnd' is not allowed; expected one of \['rewind', 'lr_rewind', 'finetune'\]"),
    ({"score": "magnitud"}, r"unknown score 'magnitud'; known scores: \[.*'magnitude'"),
    ({"allocation": "erk?"}, r"unknown allocation 'erk\?'; known allocations: \[.*'global'"),
    ({"layer_fractions": {"out[": 0.1}}, r"layer_fractions key='out\[' is not a valid regex"),
    ({"layer_fractions": {"out": 1.5}}, r"layer_fractions\['out'\]=1.5 is not allowed"),
    ({"mode": "up"}, r"mode='up' is not allowed"),
    ({"modes": {"val_f1": "high"}}, r"modes\['val_f1'\]='high' is not allowed; expected 'min' or 'max'"),
    ({"include": "fc["}, r"include='fc\[' is not a valid regex"),
    ({"exclude": "(out"}, r"exclude='\(out' is not a valid regex"),
    ({"keep_dense": "*"}, r"keep_dense='\*' is not a valid regex"),
    ({"score": ["magnitude"]}, r"unknown score \['magnitude'\]; known scores: \[.*'magnitude'"),
    ({"allocation": ["global"]}, r"unknown allocation \['global'\]; known allocations"),
    ({"seed": "0"}, r"seed='0' is not allowed; expected an int"),
    ({"seed": 1.5}, r"seed=1.5 is not allowed; expected an int"),
    ({"types": "Linear"}, r"types='Linear' is not allowed; expected a list of class names"),
])
def test_imp_arguments_checked_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        IMPCallback(**kwargs)


@pytest.mark.parametrize("step", ["5 epochs", "it", -1, "1.5ep", "5 ep", "5ep 3it", "5e p"])
def test_malformed_rewind_step(step):
    with pytest.raises(ValueError, match="'500it', '2ep' or '1ep50it'"):
        RewindCallback(step=step)


class NoTraining(Callback):
    """Fails the test if a training batch ever starts."""

    def on_train_batch_start(self, *args):
        raise AssertionError("training started before the error")


def _fit_raises(tmp_path, datamodule, callbacks, needle, model=None, **trainer_kwargs):
    model = model or digits_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(tmp_path, [*callbacks, NoTraining()], **trainer_kwargs)
    with pytest.raises(ValueError, match=needle):
        trainer.fit(model, datamodule)
    # Nothing lost: the module's weights are as they were.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_rewind_step_beyond_training(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [RewindCallback(step="2ep"), IMPCallback(rounds=1)],
                r"rewind step='2ep' \(= 44 optimizer steps\) is not inside one training of 44 steps.*allowed: 0 to 43",
                max_epochs=2)
    _fit_raises(tmp_path, datamodule, [RewindCallback(step=30), IMPCallback(rounds=1)],
                r"rewind step='30it'.*not inside one training of 20 steps", max_steps=20)


def test_no_prunable_parameters(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [IMPCallback(types=["Conv2d"])], r"no prunable parameters in Classifier")


def test_regex_matching_nothing(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [IMPCallback(include=r"^encoder\.")], r"include='\^encoder\\\\.' matches no")
    _fit_raises(tmp_path, datamodule, [IMPCallback(layer_fractions={r"head\.weight": 0.1})],
                r"layer_fractions key='head\\\\.weight' matches no prunable parameter")
    _fit_raises(tmp_path, datamodule, [IMPCallback(keep_dense=r"head\.weight")],
                r"keep_dense='head\\\\.weight' matches no prunable parameter")


def test_two_rewind_callbacks(tmp_path, datamodule):
    # One rewind point per experiment: Lightning itself refuses two callbacks with one state key, at Trainer init.
    with pytest.raises(RuntimeError, match="more than one stateful callback of type `RewindCallback`"):
        make_trainer(tmp_path, [RewindCallback(0), RewindCallback(5), IMPCallback()])


def test_infinite_training_length(tmp_path, datamodule):
    _fit_raises(tmp_path, datamodule, [IMPCallback()], "one training has no finite length", max_epochs=-1)


def _other_architecture():
    return Classifier(model="mlp", model_kwargs={"in_features": 64, "hidden": [20], "num_classes": 10})


def test_ticket_into_a_different_architecture(tmp_path):
    model = digits_model()
    masks = Masks({"model.out.weight": torch.rand_like(model.model.out.weight) > 0.5})
    path = tmp_path / "t.pt"
    Ticket(masks, model.state_dict(), {"round": 1}).save(path)
    with pytest.raises(ValueError, match=r"the ticket does not fit Classifier"):
        load_ticket(path).apply(_other_architecture())


def test_masks_that_do_not_fit_the_model(tmp_path, datamodule):
    model = digits_model()
    bad = Masks({"model.out.weight": torch.ones(3, 3, dtype=torch.bool)})
    Ticket(bad, model.state_dict(), {}).save(tmp_path / "bad.pt")
    _fit_raises(tmp_path, datamodule, [MaskingCallback(ticket=str(tmp_path / "bad.pt"))],
                r"'model.out.weight' has shape \(3, 3\)")


@pytest.mark.parametrize("content", [b"not a ticket at all", b""])
def test_corrupted_or_foreign_ticket_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}.*is not a readable ticket file"):
        load_ticket(path)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="is not a ticket: expected format 'lt-lightning-ticket/1'"):
        load_ticket(path)
    with pytest.raises(FileNotFoundError, match="no ticket file at"):
        load_ticket(tmp_path / "missing.pt")

import lightning.pytorch as pl
import pytest
import torch
from conftest import digits_model, make_trainer

from lt_lightning import RewindCallback
from lt_lightning.zoo import Classifier


@pytest.mark.parametrize("step", [0, 7, "7it", "1ep", "1ep5it"])
def test_snapshot_is_the_state_after_exactly_k_steps(tmp_path, datamodule, step):
    k = {0: 0, 7: 7, "7it": 7, "1ep": 22, "1ep5it": 27}[step]
    pl.seed_everything(0, verbose=False)
    reference = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[3, 25])
    if k:
        make_trainer(tmp_path / "ref", max_steps=k, max_epochs=None).fit(reference, datamodule)

    pl.seed_everything(0, verbose=False)
    rewind = RewindCallback(step=step)
    model = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[3, 25])
    trainer = make_trainer(tmp_path / "run", [rewind], max_epochs=2)
    trainer.fit(model, datamodule)

    snap = rewind.snapshot
    assert snap.step == k and trainer.global_step == 44
    for name, value in reference.state_dict().items():
        assert torch.equal(snap.model[name], value), name
    assert all(t.device.type == "cpu" for t in snap.model.values())
    expected_lr = 0.1 * 0.1 ** sum(k >= m for m in (3, 25))
    assert snap.optimizers[0]["param_groups"][0]["lr"] == pytest.approx(expected_lr)
    assert snap.schedulers[0]["last_epoch"] == k
    # momentum buffers exist once a step was taken
    assert bool(snap.optimizers[0]["state"]) == (k > 0)


class EpochScheduled(Classifier):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


def test_epoch_interval_scheduler_has_stepped_at_an_epoch_rewind_point(tmp_path, datamodule):
    rewind = RewindCallback(step="2ep")
    model = EpochScheduled(model="mlp", model_kwargs={"in_features": 64, "hidden": [16], "num_classes": 10})
    make_trainer(tmp_path, [rewind], max_epochs=3).fit(model, datamodule)
    assert rewind.snapshot.schedulers[0]["last_epoch"] == 2
    assert rewind.snapshot.optimizers[0]["param_groups"][0]["lr"] == pytest.approx(0.025)


def test_snapshot_survives_a_checkpoint(tmp_path, datamodule):
    rewind = RewindCallback(step=5)
    trainer = make_trainer(tmp_path, [rewind], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    ckpt = torch.load(tmp_path / "c.ckpt", weights_only=False)
    restored = RewindCallback(step=5)
    restored.load_state_dict(ckpt["callbacks"][rewind.state_key])
    assert restored.snapshot.step == 5
    assert all(torch.equal(restored.snapshot.model[k], v) for k, v in rewind.snapshot.model.items())

import torch
from torch import nn

from lt_lightning.state import Snapshot


def _train_step(net, opt, sched):
    loss = net(torch.randn(4, 3)).pow(2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_snapshot_restores_weights_optimizer_and_scheduler_exactly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    _train_step(net, opt, sched)
    snap = Snapshot.capture(net, [opt], [sched], step=1)
    assert all(t.device.type == "cpu" for t in snap.model.values())
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    for _ in range(3):
        _train_step(net, opt, sched)
    assert opt.param_groups[0]["lr"] != 0.1
    snap.restore_model(net)
    snap.restore_optimizers([opt])
    snap.restore_schedulers([sched])
    assert all(torch.equal(net.state_dict()[k], v) for k, v in expected.items())
    assert opt.param_groups[0]["lr"] == 0.1 and sched.last_epoch == 1
    # The snapshot survives being used: restoring twice gives the same state.
    torch.manual_seed(1)
    _train_step(net, opt, sched)
    after_once = {k: v.clone() for k, v in net.state_dict().items()}
    snap.restore_model(net)
    snap.restore_optimizers([opt])
    snap.restore_schedulers([sched])
    torch.manual_seed(1)
    _train_step(net, opt, sched)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in after_once.items())


def test_keep_buffers_takes_only_hyperparameters():
    net = nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train_step(net, opt, sched)
    snap = Snapshot.capture(net, [opt], [sched], step=1)
    _train_step(net, opt, sched)
    momentum = opt.state[net.weight]["momentum_buffer"].clone()
    snap.restore_optimizers([opt], keep_buffers=True)
    assert opt.param_groups[0]["lr"] == 0.05
    assert torch.equal(opt.state[net.weight]["momentum_buffer"], momentum)


def test_state_dict_round_trip():
    net = nn.Linear(2, 2)
    snap = Snapshot.capture(net, step=3, epoch=1)
    back = Snapshot.from_state_dict(snap.state_dict())
    assert back.step == 3 and back.epoch == 1 and torch.equal(back.model["weight"], net.weight.detach())


def test_snapshot_keeps_multistep_milestones_a_counter_of_steps():
    # MultiStepLR keeps its milestones in a Counter: a copy rebuilt from (key, value) pairs would count the pairs.
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4, 4], gamma=0.5)
    snap = Snapshot.from_state_dict(Snapshot.capture(nn.Linear(2, 1), [opt], [sched]).state_dict())
    assert snap.schedulers[0]["milestones"] == sched.milestones and type(snap.schedulers[0]["milestones"]) is type(
        sched.milestones)
    fresh_opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    fresh = torch.optim.lr_scheduler.MultiStepLR(fresh_opt, milestones=[100], gamma=0.5)
    snap.restore_optimizers([fresh_opt])
    snap.restore_schedulers([fresh])
    for _ in range(4):
        fresh_opt.step()
        fresh.step()
    assert fresh.get_last_lr() == [0.125]  # halved at step 2 and twice at step 4

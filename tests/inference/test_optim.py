"""The trainer's Adam: the same updates as torch.optim.Adam(fused=True), with or without its short step."""
import pytest
import torch

from scvi.inference import _optim
from scvi.inference._optim import Adam


def _network(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(optimizer_class, n_steps=6, change_lr_at=3, closure=False, freeze_last_bias_at=2, **kwargs):
    network = _network()
    optimizer = optimizer_class(network.parameters(), lr=1e-2, eps=1e-3, weight_decay=1e-3, fused=True, **kwargs)
    data = torch.randn(32, 7, generator=torch.Generator().manual_seed(1))
    for step in range(n_steps):
        if step == change_lr_at:
            for group in optimizer.param_groups:
                group["lr"] *= 0.3
        optimizer.zero_grad(set_to_none=True)
        loss = network(data).pow(2).mean()
        loss.backward()
        if step >= freeze_last_bias_at:
            network[2].bias.grad = None  # a parameter without a gradient this step
        if closure:
            optimizer.step(lambda: loss)
        else:
            optimizer.step()
    return network, optimizer


@pytest.mark.parametrize("closure", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_same_updates_as_torch_adam(closure, amsgrad):
    ours, optimizer = _train(Adam, closure=closure, amsgrad=amsgrad)
    reference, reference_optimizer = _train(torch.optim.Adam, closure=closure, amsgrad=amsgrad)
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state[p][key], reference_optimizer.state[q][key])


def test_short_step_is_taken_once_the_state_exists(monkeypatch):
    network = _network()
    optimizer = Adam(network.parameters(), lr=1e-2, fused=True)
    calls = []
    original = _optim._torch_adam_step
    monkeypatch.setattr(_optim, "_torch_adam_step", lambda self, closure=None: calls.append(1) or original(self, closure))
    hook_calls = []
    optimizer.register_step_post_hook(lambda *args: hook_calls.append(1))
    for _ in range(3):
        optimizer.zero_grad()
        network(torch.randn(4, 7)).sum().backward()
        optimizer.step()
    assert len(calls) == 1  # the first step creates the state through torch's step
    assert hook_calls == [1, 1, 1]  # hooks run once per step on either path
    optimizer.step(lambda: None)  # a closure: torch's step
    assert len(calls) == 2 and hook_calls == [1, 1, 1, 1]


def test_new_parameters_get_their_state():
    network = _network()
    optimizer = Adam(network[0].parameters(), lr=1e-2, fused=True)
    network(torch.randn(4, 7)).sum().backward()
    optimizer.step()
    optimizer.add_param_group({"params": network[2].parameters()})
    optimizer.zero_grad()
    network(torch.randn(4, 7)).sum().backward()
    before = network[2].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, network[2].weight)
    assert int(optimizer.state[network[2].weight]["step"]) == 1
    assert int(optimizer.state[network[0].weight]["step"]) == 2


def test_zero_grad():
    network = _network()
    optimizer = Adam(network.parameters(), lr=1e-2, fused=True)
    network(torch.randn(4, 7)).sum().backward()
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in network.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in network.parameters())


def test_two_groups_and_a_reloaded_state_match_torch_adam():
    """Parameter groups each keep their step counts (shared per group), and a state loaded from
    ``state_dict`` (separate counts again) continues the same updates."""

    def run(optimizer_class):
        network = _network()
        groups = [{"params": network[0].parameters()}, {"params": network[2].parameters(), "lr": 3e-3}]
        optimizer = optimizer_class(groups, lr=1e-2, fused=True)
        data = torch.randn(32, 7, generator=torch.Generator().manual_seed(1))
        for step in range(6):
            if step == 3:
                state = optimizer.state_dict()
                optimizer = optimizer_class(
                    [{"params": network[0].parameters()}, {"params": network[2].parameters(), "lr": 3e-3}],
                    lr=1e-2,
                    fused=True,
                )
                optimizer.load_state_dict(state)
            optimizer.zero_grad()
            network(data).pow(2).mean().backward()
            optimizer.step()
        return network, optimizer

    ours, optimizer = run(Adam)
    reference, reference_optimizer = run(torch.optim.Adam)
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(optimizer.state[p]["step"], reference_optimizer.state[q]["step"])
        assert float(optimizer.state[p]["step"]) == 6.0

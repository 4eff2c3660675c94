"""One torch thread for the model tests: tiny networks gain nothing from more, and OpenMP
spin-waiting makes them very slow on a busy machine."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def record_calls(monkeypatch):
    """``record_calls(owner, name, record=...)`` wraps ``owner.name`` for the test and returns the
    list to which each call appends ``record(args, result)`` (by default the arguments)."""

    def install(owner, name, record=lambda args, result: args):
        calls = []
        original = getattr(owner, name)

        def recording(*args):
            result = original(*args)
            calls.append(record(args, result))
            return result

        monkeypatch.setattr(owner, name, recording)
        return calls

    return install

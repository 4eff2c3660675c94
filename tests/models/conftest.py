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

import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them when pytest runs things in one process.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """For tests that run a pipeline with --threads 1: restores torch's thread count afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

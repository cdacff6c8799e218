import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them.  Under pytest-xdist (`make test`: -n 2) the
# test processes share the cores, one torch thread each.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // _workers))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """For tests that run a pipeline with --threads 1: restores torch's thread count afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

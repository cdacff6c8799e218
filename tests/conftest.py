import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them when pytest runs things in one process.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)

import os

import pytest
import threadpoolctl
import torch

# Two cores in CI: keep the test processes from oversubscribing them.  Under pytest-xdist (`make test`:
# -n 2) they share the cores, one thread each: torch's, and the thread pools of numpy's BLAS and of
# scikit-learn's and scipy's OpenMP (left at their default, two processes of two spinning threads
# each made t-SNE and ridge fits 1.6x slower on 2 cores).  The pools loaded by now (numpy's, which a
# pytest plugin imports, and torch's) are limited here; those that load later read the variables.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, min(2, os.cpu_count() or 1) // _workers)
if _workers > 1 and "PYTEST_XDIST_WORKER" in os.environ:  # a test process of several, not their controller
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_threads))
    threadpoolctl.threadpool_limits(_threads)
torch.set_num_threads(_threads)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """For tests that run a pipeline with --threads 1: restores torch's thread count afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

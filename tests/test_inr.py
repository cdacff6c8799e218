import numpy as np
import pytest
import torch
from torch import nn

from inrforge.arch import INRSpec, make_arch
from inrforge.errors import InrforgeError
from inrforge.inr import encode, image_grid, psnr, render
from inrforge.weights import Weights


def reference_module(arch, flat):
    """A plain nn.Sequential built from one INR's flat parameters (the per-file way)."""
    w = Weights.from_flat(flat[None], arch)
    layers = []
    for i, (W, b) in enumerate(zip(w.weights, w.biases)):
        lin = nn.Linear(W.shape[2], W.shape[1]).double()
        lin.weight.data, lin.bias.data = W[0].clone(), b[0].clone()
        layers.append(lin)
    last = len(layers) - 1

    def f(x):
        h = encode(arch, x)
        for i, lin in enumerate(layers):
            h = lin(h)
            if i < last:
                h = torch.sin(arch.w0 * h) if arch.family == "siren" else torch.relu(h)
        return h + arch.output_offset

    return f


def check_against_reference(arch):
    flat = torch.randn(3, arch.param_count, dtype=torch.float64) * 0.3
    x = torch.rand(50, arch.in_features, dtype=torch.float64) * 2 - 1
    out = render(Weights.from_flat(flat, arch), x)
    assert out.shape == (3, 50, arch.out_features)
    for k in range(3):
        torch.testing.assert_close(out[k], reference_module(arch, flat[k])(x), rtol=1e-12, atol=1e-12)


def test_siren_forward_matches_a_plain_module():
    check_against_reference(make_arch("siren-dwsnets"))
    check_against_reference(INRSpec(widths=(3, 6, 6, 6, 2), w0=10.0))


def test_relu_and_fourier_forward_match_a_plain_module():
    check_against_reference(make_arch("relu", out_features=3))
    check_against_reference(make_arch("relu-fourier", fourier_features=4, hidden=8).__class__(
        widths=(8, 8, 1), family="relu", init="relu", fourier=make_arch("relu-fourier", fourier_features=4).fourier))


def test_per_inr_coordinates_and_chunking():
    arch = make_arch()
    w = Weights.from_flat(arch.init_flat(range(5)), arch)
    x = image_grid(4, 4)
    shared = render(w, x)
    per = render(w, x.expand(5, -1, -1))
    assert torch.equal(shared, per)
    torch.testing.assert_close(render(w, x, chunk=2), shared)


def test_image_grid_is_row_major_on_minus_one_one():
    g = image_grid(3, 4)
    assert g.shape == (12, 2)
    torch.testing.assert_close(g[1], torch.tensor([-1.0, -1 / 3]))  # row 0, column 1
    assert torch.equal(g[4], torch.tensor([0.0, -1.0]))  # row 1, column 0
    assert torch.equal(g[-1], torch.tensor([1.0, 1.0]))


def test_psnr_definition():
    assert torch.allclose(psnr(torch.tensor([1e-4])), torch.tensor([40.0]))


class _Sin(nn.Module):
    def __init__(self, w0):
        super().__init__()
        self.w0 = w0

    def forward(self, x):
        return torch.sin(self.w0 * x)


def sequential_of(arch, flat):
    """nn.Sequential(Linear, Sin|ReLU, ..., Linear) loaded with one INR's flat parameters, and the
    Fourier encoding written out from the documented formula with the arch's matrix B."""
    mods = []
    offsets = iter(arch.layout)
    for i in range(arch.n_layers):
        ws, bs = next(offsets), next(offsets)
        lin = nn.Linear(arch.widths[i], arch.widths[i + 1], dtype=flat.dtype)
        with torch.no_grad():
            lin.weight.copy_(flat[ws.offset: ws.offset + ws.size].reshape(ws.shape))
            lin.bias.copy_(flat[bs.offset: bs.offset + bs.size])
        mods.append(lin)
        if i < arch.n_layers - 1:
            mods.append(_Sin(arch.w0) if arch.family == "siren" else nn.ReLU())
    seq = nn.Sequential(*mods)

    def f(x):
        if arch.fourier is not None:
            proj = 2 * torch.pi * x @ arch.fourier.matrix().to(x.dtype).T
            x = torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)
        return seq(x) + arch.output_offset

    return f


@pytest.mark.parametrize("preset", ["siren", "siren-dwsnets", "relu", "relu-fourier"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 1, 8, 2), (1, 1, 5, 1), (2, 3, 6, 3), (3, 2, 1, 4)])  # in, out, hidden, depth
def test_batched_forward_equals_nn_sequential(preset, dtype, shape):
    arch = make_arch(preset, in_features=shape[0], out_features=shape[1], hidden=shape[2], depth=shape[3],
                     fourier_features=3, w0=15.0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    gen = torch.Generator().manual_seed(0)
    for b in (0, 1, 3):
        flat = (arch.init_flat(range(b)) + 0.05 * torch.randn(b, arch.param_count, generator=gen)).to(dtype)
        w = Weights.from_flat(flat, arch)
        x = (torch.rand(7, arch.in_features, generator=gen) * 2 - 1).to(dtype)
        xb = (torch.rand(b, 7, arch.in_features, generator=gen) * 2 - 1).to(dtype)
        for coords in (x, xb):
            for chunk in (None, 2):
                out = render(w, coords, chunk=chunk)
                assert out.shape == (b, 7, arch.out_features) and out.dtype == dtype
                with torch.no_grad():
                    for k in range(b):
                        want = sequential_of(arch, flat[k])(coords if coords.ndim == 2 else coords[k])
                        torch.testing.assert_close(out[k], want, **tol)


def test_fourier_encoding_uses_the_matrix_the_store_records(tmp_path):
    from inrforge.store import create_store

    arch = make_arch("relu-fourier", fourier_features=5, fourier_sigma=2.5, fourier_seed=7)
    store = create_store(tmp_path / "s.zarr", arch=arch, n_objects=1, views=1, labels=np.zeros(1, dtype=np.int64),
                         splits={}, source={"name": "x"}, fit={})
    B = torch.from_numpy(store.root["fourier_matrix"][...]).double()
    x = torch.rand(9, 2, dtype=torch.float64)
    want = torch.cat([torch.cos(2 * torch.pi * x @ B.T), torch.sin(2 * torch.pi * x @ B.T)], dim=-1)
    torch.testing.assert_close(encode(arch, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("coords", [torch.rand(5), torch.rand(5, 3), torch.rand(3, 5, 2), torch.rand(1, 2, 5, 2)])
def test_render_refuses_coordinates_of_another_shape(coords):
    arch = make_arch()
    w = Weights.from_flat(arch.init_flat(range(2)), arch)
    with pytest.raises(InrforgeError, match=r"expected \(N, 2\) or \(2, N, 2\)"):
        render(w, coords)
    with pytest.raises(InrforgeError, match="chunk"):
        render(w, torch.rand(5, 2), chunk=0)

import torch
from torch import nn

from inrforge.arch import INRSpec, make_arch
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

import math

import pytest
import torch

from inrforge.arch import make_arch
from inrforge.augment import Permute
from inrforge.contrastive import ContrastiveModel, default_views_transform, nt_xent, two_views
from inrforge.errors import InrforgeError
from inrforge.models import DWSNet
from inrforge.weights import Weights


def test_nt_xent_known_value():
    # Two orthogonal pairs at temperature 1: each row sees its partner at similarity 1 and the
    # two others at 0, so every row's loss is -log(e / (e + 2)) = log(1 + 2/e).
    z = torch.eye(2)
    assert float(nt_xent(z, z.clone(), temperature=1.0)) == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def test_nt_xent_matches_explicit_formula(gen):
    z1, z2 = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    t = 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    losses = []
    for i in range(10):
        partner = (i + 5) % 10
        denom = sum(math.exp(sim[i, j]) for j in range(10) if j != i)
        losses.append(-math.log(math.exp(sim[i, partner]) / denom))
    assert float(nt_xent(z1, z2, t)) == pytest.approx(sum(losses) / 10, rel=1e-5)


def test_nt_xent_invariances(gen):
    z1, z2 = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    base = nt_xent(z1, z2, 0.2)
    perm = torch.randperm(8, generator=gen)
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm], 0.2), base)  # batch order
    torch.testing.assert_close(nt_xent(z2, z1, 0.2), base)  # which view is "first"
    scale = torch.rand(8, 1, generator=gen) + 0.1
    torch.testing.assert_close(nt_xent(z1 * scale, z2 * 3.0, 0.2), base)  # only directions count


def test_nt_xent_lower_for_aligned_pairs(gen):
    z1 = torch.randn(16, 8, generator=gen)
    aligned = nt_xent(z1, z1 + 0.01 * torch.randn(16, 8, generator=gen), 0.1)
    unrelated = nt_xent(z1, torch.randn(16, 8, generator=gen), 0.1)
    assert float(aligned) < 0.1 * float(unrelated)
    assert float(aligned) < math.log(2 * 16 - 1)  # below the uniform (chance) level


def test_nt_xent_gradient_and_errors(gen):
    z1 = torch.randn(4, 3, generator=gen, requires_grad=True)
    nt_xent(z1, torch.randn(4, 3, generator=gen)).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


def test_views_differ_and_dwsnet_contrastive_model_is_permutation_invariant(gen):
    arch = make_arch("siren-dwsnets", in_features=1, hidden=8, depth=2)
    w = Weights.from_flat(torch.randn(6, arch.param_count, generator=gen), arch)
    t = default_views_transform(arch)
    v1, v2 = two_views(w, t, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    assert not torch.allclose(v1.flatten(), v2.flatten())
    torch.manual_seed(0)
    model = ContrastiveModel(DWSNet(arch, 8, hidden=4, depth=2), emb_dim=8, proj_dim=5).eval()
    with torch.no_grad():
        out = model(w)
        assert out.shape == (6, 5) and model.embed(w).shape == (6, 8)
        torch.testing.assert_close(model(Permute()(w, generator=gen)), out, atol=1e-5, rtol=1e-4)

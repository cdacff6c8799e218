"""DWSNet: equivariance / invariance to hidden-neuron permutations, completeness, training."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import pytest
import torch

from inrforge import INRSpec, InrforgeError, Weights
from inrforge.models import DWSLayer, DWSNet, DWSNetEquivariant, InvariantPool, WSFeatures, WSNorm, tensor_slots

DT = torch.float64
WIDTHS = [(2, 5, 7, 3), (3, 4, 1), (2, 6, 6, 6, 2)]


def arch_of(widths) -> INRSpec:
    return INRSpec(widths=tuple(widths), family="relu", init="relu")


def block_params(layer: DWSLayer):
    """Yield ``(out tensor, in tensor, K, parameter, row slice, col slice)`` for every term of ``layer``."""
    for k in layer.bank_keys:
        mem = layer.bank_members[k]
        w = layer.weight[layer.bank_names[k]]
        r0 = 0
        for t_in in mem:
            c0 = 0
            for t_out in mem:
                yield (layer.slots[t_out].name, layer.slots[t_in].name, k, w,
                       slice(r0, r0 + layer.ce_in[t_in]), slice(c0, c0 + layer.ce_out[t_out]))
                c0 += layer.ce_out[t_out]
            r0 += layer.ce_in[t_in]


@torch.no_grad()
def keep_only(layer: DWSLayer, pred) -> None:
    """Zero every term of ``layer`` for which ``pred(out_name, in_name, K)`` is false (and the bias)."""
    masks = {name: torch.zeros_like(p) for name, p in layer.weight.items()}
    for out_name, in_name, k, _, rs, cs in block_params(layer):
        if pred(out_name, in_name, k):
            masks[layer.bank_names[k]][rs, cs] = 1
    for name, p in layer.weight.items():
        p.mul_(masks[name])
    if layer.bias is not None:
        layer.bias.zero_()


def expected_param_count(arch: INRSpec, in_channels: int, out_channels: int, bias: bool = True) -> int:
    """Independent count of a DWSLayer's linear-map dimension: ``2**|shared|`` terms per tensor pair."""
    slots = tensor_slots(arch)
    n = 0
    for so in slots:
        for si in slots:
            shared = set(so.perm) & set(si.perm)
            n += 2 ** len(shared) * si.fixed * in_channels * so.fixed * out_channels
    if bias:
        n += sum(s.fixed * out_channels for s in slots)
    return n


def rand_nfn(arch, c, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(b, c, *s, generator=g, dtype=DT) for s in arch.weight_shapes]
    bs = [torch.randn(b, c, *s, generator=g, dtype=DT) for s in arch.bias_shapes]
    return ws, bs


def rand_perms(arch, b, seed=1):
    """Per sample, a random permutation of every hidden layer (non-identity where possible)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(b):
        p = {}
        for k in range(1, arch.n_layers):
            n = arch.widths[k]
            while True:
                pk = torch.randperm(n, generator=g)
                if n == 1 or not torch.equal(pk, torch.arange(n)):
                    break
            p[k] = pk
        out.append(p)
    return out


def permute_nfn(ws, bs, perms):
    """Apply per-sample hidden permutations to nfn-layout (B, C, ...) tensors."""
    ws, bs = list(ws), list(bs)
    b = ws[0].shape[0]
    new_w = [[None] * b for _ in ws]
    new_b = [[None] * b for _ in bs]
    for s in range(b):
        w_s = [w[s] for w in ws]
        b_s = [x[s] for x in bs]
        for k, pk in perms[s].items():
            w_s[k - 1] = w_s[k - 1][:, pk, :]
            b_s[k - 1] = b_s[k - 1][:, pk]
            w_s[k] = w_s[k][:, :, pk]
        for i in range(len(ws)):
            new_w[i][s], new_b[i][s] = w_s[i], b_s[i]
    return [torch.stack(x) for x in new_w], [torch.stack(x) for x in new_b]


def permute_weights(w: Weights, perms) -> Weights:
    ws, bs = permute_nfn([t.unsqueeze(1) for t in w.weights], [t.unsqueeze(1) for t in w.biases], perms)
    return Weights(tuple(t[:, 0] for t in ws), tuple(t[:, 0] for t in bs), w.arch)


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def feats_close(fa: WSFeatures, fb: WSFeatures):
    for x, y in zip(fa.tensors, fb.tensors):
        assert_close(x, y)


def randomise_scores(layer, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.score.values():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def check_layer_equivariant(layer, arch, c_in, seed=0):
    ws, bs = rand_nfn(arch, c_in, seed=seed)
    perms = rand_perms(arch, ws[0].shape[0], seed=seed + 1)
    y = layer(WSFeatures.from_channels_second(ws, bs, arch))
    y_of_perm = layer(WSFeatures.from_channels_second(*permute_nfn(ws, bs, perms), arch))
    perm_of_y = WSFeatures.from_channels_second(*permute_nfn(*y.to_channels_second(), perms), arch)
    feats_close(y_of_perm, perm_of_y)
    return y


# ----------------------------------------------------------------------------------------------
# layout
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", WIDTHS + [(4, 3)])
def test_features_roundtrip(widths):
    arch = arch_of(widths)
    ws, bs = rand_nfn(arch, 3)
    f = WSFeatures.from_channels_second(ws, bs, arch)
    ws2, bs2 = f.to_channels_second()
    for a, b in zip(ws + bs, list(ws2) + list(bs2)):
        assert torch.equal(a, b)
    w = Weights(tuple(t[:, 0] for t in ws), tuple(t[:, 0] for t in bs), arch)
    w2 = WSFeatures.from_weights(w).to_weights()
    assert torch.equal(w.flatten(), w2.flatten())


def test_from_channels_second_rejects_wrong_shapes():
    """A transposed (B, C, d_in, d_out) weight used to be reshaped silently into scrambled features."""
    arch = arch_of((2, 5, 3))
    ws, bs = rand_nfn(arch, 1)
    with pytest.raises(InrforgeError, match=r"weights\[0\]"):
        WSFeatures.from_channels_second([ws[0].transpose(2, 3), ws[1]], bs, arch)
    arch = arch_of((2, 4, 4, 3))
    ws, bs = rand_nfn(arch, 2)
    with pytest.raises(InrforgeError, match=r"weights\[2\]"):
        WSFeatures.from_channels_second([ws[0], ws[1], ws[2].transpose(2, 3)], bs, arch)
    with pytest.raises(InrforgeError, match=r"biases\[1\]"):
        WSFeatures.from_channels_second(ws, [bs[0], bs[1][:, :1], bs[2]], arch)
    with pytest.raises(InrforgeError, match=r"weights\[0\]"):
        WSFeatures.from_channels_second([w[:, 0] for w in ws], bs, arch)


def test_features_add_does_not_broadcast():
    arch = arch_of((1, 3, 1))  # every canonical tensor ends in C: C=1 features broadcast against C=2
    f2 = WSFeatures.from_channels_second(*rand_nfn(arch, 2, b=4), arch)
    with pytest.raises(InrforgeError):
        f2 + WSFeatures.from_channels_second(*rand_nfn(arch, 1, b=4), arch)
    with pytest.raises(InrforgeError):
        f2 + WSFeatures.from_channels_second(*rand_nfn(arch, 2, b=1), arch)
    feats_close(f2 + f2, f2.map(lambda t: 2 * t))


def test_canonical_layout():
    arch = arch_of((2, 5, 7, 3))
    f = WSFeatures.from_channels_second(*rand_nfn(arch, 4, b=2), arch)
    shapes = [tuple(t.shape) for t in f.tensors]
    assert shapes == [(2, 5, 8), (2, 5, 4), (2, 7, 5, 4), (2, 7, 4), (2, 7, 12), (2, 12)]


# ----------------------------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("pool", ["mean", "sum", "max"])
def test_layer_equivariant(widths, pool):
    torch.manual_seed(0)
    arch = arch_of(widths)
    layer = DWSLayer(arch, 3, 4, pool=pool).to(DT)
    check_layer_equivariant(layer, arch, 3)


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("c_in", [2, 8])
def test_layer_equivariant_attention(widths, c_in):
    torch.manual_seed(0)
    arch = arch_of(widths)
    layer = DWSLayer(arch, c_in, 3, set_layer="attention").to(DT)
    randomise_scores(layer)
    check_layer_equivariant(layer, arch, c_in)


@pytest.mark.parametrize("dim", [1, 2])
def test_attention_pool_matches_naive(dim):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=DT)
    s = torch.randn(2, 3, 5, 4, generator=g, dtype=DT)
    naive = (torch.softmax(s, dim).repeat_interleave(2, dim=-1) * x).sum(dim)
    assert_close(DWSLayer._attention_pool(x, s, dim), naive)
    x0, s0 = x[:, 0], s[:, 0]
    assert_close(DWSLayer._attention_pool(x0, s0, 1), (torch.softmax(s0, 1).repeat_interleave(2, -1) * x0).sum(1))


@pytest.mark.parametrize("pool,set_layer", [("mean", "linear"), ("max", "linear"), ("sum", "attention")])
def test_layer_gradcheck(pool, set_layer):
    """Analytic gradients (the layer adds terms in place) match finite differences."""
    torch.manual_seed(0)
    arch = arch_of((2, 3, 4, 2))
    layer = DWSLayer(arch, 2, 2, pool=pool, set_layer=set_layer).to(DT)
    randomise_scores(layer)
    ws, bs = rand_nfn(arch, 2, b=2)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    inputs = [t.clone().requires_grad_() for t in ws + bs]

    def fn(*xs):
        f = WSFeatures.from_channels_second(xs[:3], xs[3:6], arch)
        p = dict(zip(names, xs[6:]))
        return torch.func.functional_call(layer, p, (f,)).tensors

    assert torch.autograd.gradcheck(fn, tuple(inputs + params), fast_mode=True)


def test_layer_accepts_weights_and_checks_inputs():
    arch = arch_of((2, 5, 7, 3))
    w = Weights.from_flat(torch.randn(2, arch.param_count), arch)
    out = DWSLayer(arch, 1, 4)(w)
    assert out.channels == 4 and len(out) == 2
    with pytest.raises(InrforgeError):
        DWSLayer(arch, 2, 4)(w)
    with pytest.raises(InrforgeError):
        DWSLayer(arch_of((2, 5, 3)), 1, 4)(w)
    with pytest.raises(InrforgeError):
        DWSLayer(arch, 1, 4, pool="median")
    with pytest.raises(InrforgeError):
        DWSLayer(arch, 1, 4, set_layer="transformer")


FAMILIES = [("W", "W"), ("W", "b"), ("b", "W"), ("b", "b")]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f[1]}->{f[0]}")
@pytest.mark.parametrize("widths", [(2, 5, 7, 3), (2, 6, 6, 6, 2)])
def test_each_block_family_equivariant(family, widths):
    """Only the (out kind, in kind) terms kept: still equivariant, and only those outputs move."""
    torch.manual_seed(0)
    arch = arch_of(widths)
    layer = DWSLayer(arch, 2, 3, pool="mean").to(DT)
    keep_only(layer, lambda o, i, k: (o[0], i[0]) == family)
    y = check_layer_equivariant(layer, arch, 2)
    for s, t in zip(tensor_slots(arch), y.tensors):
        if s.kind == family[0]:
            assert t.abs().max() > 1e-3, s.name
        else:
            assert t.abs().max() == 0, s.name


def test_every_tensor_pair_and_term_equivariant():
    """Each single basis term (out tensor, in tensor, K) alone is equivariant and touches only its output."""
    torch.manual_seed(0)
    arch = arch_of((2, 5, 7, 3))
    base = DWSLayer(arch, 2, 2, pool="max").to(DT)
    terms = sorted({(o, i, k) for o, i, k, *_ in block_params(base)})
    assert len(terms) == sum(2 ** len(set(so.perm) & set(si.perm))
                             for so in tensor_slots(arch) for si in tensor_slots(arch))
    ws, bs = rand_nfn(arch, 2, b=2, seed=3)
    perms = rand_perms(arch, 2, seed=4)
    x = WSFeatures.from_channels_second(ws, bs, arch)
    xp = WSFeatures.from_channels_second(*permute_nfn(ws, bs, perms), arch)
    for term in terms:
        layer = DWSLayer(arch, 2, 2, pool="max").to(DT)
        layer.load_state_dict(base.state_dict())
        keep_only(layer, lambda o, i, k: (o, i, k) == term)
        y = layer(x)
        feats_close(layer(xp), WSFeatures.from_channels_second(*permute_nfn(*y.to_channels_second(), perms), arch))
        moved = [s.name for s, t in zip(tensor_slots(arch), y.tensors) if t.abs().max() > 0]
        assert moved == [term[0]], term


@pytest.mark.parametrize("widths", WIDTHS + [(4, 3)])
@pytest.mark.parametrize("channels", [(1, 1), (3, 5)])
def test_param_count(widths, channels):
    arch = arch_of(widths)
    layer = DWSLayer(arch, *channels)
    n = sum(p.numel() for p in layer.parameters())
    assert n == expected_param_count(arch, *channels)


def _flat_perm_index(arch, perm):
    """Index vector: the flat parameters of the permuted INR = flat[index]."""
    flat = torch.arange(arch.param_count, dtype=DT).unsqueeze(0)
    w = permute_weights(Weights.from_flat(flat, arch), [perm])
    return w.flatten()[0].long()


@pytest.mark.parametrize("widths", [(2, 2, 3, 2), (1, 3, 2), (1, 2, 2, 2, 1)])
def test_layer_is_the_complete_equivariant_space(widths):
    """#params == dim of equivariant linear maps (mean chi^2) + invariant biases (mean chi),
    and the basis terms are linearly independent -> the layer spans every equivariant affine map."""
    arch = arch_of(widths)
    hidden = list(range(1, arch.n_layers))
    group = list(itertools.product(*[itertools.permutations(range(arch.widths[k])) for k in hidden]))
    chis = []
    for g in group:
        idx = _flat_perm_index(arch, {k: torch.tensor(p) for k, p in zip(hidden, g)})
        chis.append(int((idx == torch.arange(arch.param_count)).sum()))
    dim_linear = sum(c * c for c in chis) / len(group)
    dim_bias = sum(chis) / len(group)

    layer = DWSLayer(arch, 1, 1).to(DT)
    n_w = sum(p.numel() for p in layer.weight.values())
    assert n_w == dim_linear
    assert layer.bias.numel() == dim_bias

    # linear independence: the maps of the individual parameter entries
    layer.bias.data.zero_()
    eye = Weights.from_flat(torch.eye(arch.param_count, dtype=DT), arch)
    maps = []
    with torch.no_grad():
        for name, p in layer.weight.items():
            for j in range(p.numel()):
                for q in layer.weight.values():
                    q.zero_()
                p.view(-1)[j] = 1.0
                maps.append(layer(eye).to_weights().flatten().reshape(-1))
    assert torch.linalg.matrix_rank(torch.stack(maps)) == n_w


def test_single_layer_inr_is_a_plain_linear_map():
    arch = arch_of((4, 3))  # nothing is permuted
    layer = DWSLayer(arch, 2, 3)
    assert sum(p.numel() for p in layer.parameters()) == (12 + 3) * 2 * (12 + 3) * 3 + (12 + 3) * 3


# ----------------------------------------------------------------------------------------------
# networks
# ----------------------------------------------------------------------------------------------
def rand_weights(arch, b=4, seed=0, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    return Weights.from_flat(torch.randn(b, arch.param_count, generator=g, dtype=dtype), arch)


NET_CONFIGS = [
    dict(),
    dict(norm="batch", residual=True, head_pool="max", pool="max"),
    dict(norm="layer", pool="sum", set_layer="attention"),
]


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("cfg", NET_CONFIGS, ids=["plain", "bn-res-max", "ln-sum-attn"])
def test_dwsnet_invariant(widths, cfg):
    torch.manual_seed(0)
    arch = arch_of(widths)
    net = DWSNet(arch, 5, hidden=4, depth=3, head_hidden=(8,), **cfg).to(DT)
    for layer in net.trunk.layers:
        randomise_scores(layer)
    w = rand_weights(arch)
    wp = permute_weights(w, rand_perms(arch, len(w)))
    for mode in (True, False):  # batch-norm statistics are permutation invariant too
        net.train(mode)
        out = net(w)
        assert out.shape == (4, 5)
        assert_close(net(wp), out)


@pytest.mark.parametrize("widths", [(2, 5, 7, 3), (3, 4, 2), (2, 6, 6, 6, 2)])
def test_dwsnet_sees_input_and_output_axes(widths):
    """d0 and dL are not permuted: permuting them must change the output (no over-pooling)."""
    torch.manual_seed(0)
    arch = arch_of(widths)
    net = DWSNet(arch, 3, hidden=4, depth=2, head_hidden=(8,)).to(DT).eval()
    w = rand_weights(arch)
    out = net(w)
    ws, bs = list(w.weights), list(w.biases)
    p0 = torch.arange(arch.widths[0]).roll(1)
    w_in = Weights((ws[0][:, :, p0], *ws[1:]), tuple(bs), arch)
    assert (net(w_in) - out).abs().max() > 1e-6
    pl = torch.arange(arch.widths[-1]).roll(1)
    w_out = Weights((*ws[:-1], ws[-1][:, pl, :]), (*bs[:-1], bs[-1][:, pl]), arch)
    assert (net(w_out) - out).abs().max() > 1e-6
    # and a hidden permutation does not change it (sanity for the same net)
    assert_close(net(permute_weights(w, rand_perms(arch, len(w)))), out)
    # INRs of other widths are refused; those of another family with these widths are read
    other = arch_of(widths[:-1] + (widths[-1] + 1,))
    with pytest.raises(InrforgeError, match=r"^input widths .* do not match the model's"):
        net(rand_weights(other))
    assert_close(net(Weights(w.weights, w.biases, dataclasses.replace(arch, family="siren", init="siren"))), out)


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_invariant_pool_keeps_d0_and_dL(pool):
    arch = arch_of((3, 5, 7, 2))
    ws, bs = rand_nfn(arch, 2, b=2)
    head = InvariantPool(arch, 2, pool)
    assert head.out_features == 2 * (3 + 1 + 1 + 1 + 2 + 2)
    out = head(WSFeatures.from_channels_second(ws, bs, arch))
    assert out.shape == (2, head.out_features)
    assert_close(head(WSFeatures.from_channels_second(*permute_nfn(ws, bs, rand_perms(arch, 2)), arch)), out)
    p0 = torch.tensor([1, 2, 0])
    ws_in = [ws[0][..., p0]] + ws[1:]
    assert (head(WSFeatures.from_channels_second(ws_in, bs, arch)) - out).abs().max() > 1e-3
    pl = torch.tensor([1, 0])
    ws_out, bs_out = ws[:-1] + [ws[-1][:, :, pl]], bs[:-1] + [bs[-1][:, :, pl]]
    assert (head(WSFeatures.from_channels_second(ws_out, bs_out, arch)) - out).abs().max() > 1e-3


def test_norm_and_pool_check_their_input():
    """Standalone WSNorm / InvariantPool used to accept features of another arch of the same depth."""
    arch, other = arch_of((2, 5, 7, 3)), arch_of((2, 4, 6, 3))
    f_other = WSFeatures.from_channels_second(*rand_nfn(other, 2), other)
    f_three = WSFeatures.from_channels_second(*rand_nfn(arch, 3), arch)
    for module in (InvariantPool(arch, 2), WSNorm(arch, 2, "batch"), WSNorm(arch, 2, "layer")):
        module.to(DT)
        with pytest.raises(InrforgeError, match="widths"):
            module(f_other)
        with pytest.raises(InrforgeError, match="channels"):
            module(f_three)
        module(WSFeatures.from_channels_second(*rand_nfn(arch, 2), arch))


@pytest.mark.parametrize("cfg", NET_CONFIGS, ids=["plain", "bn-res-max", "ln-sum-attn"])
def test_gradients_reach_every_parameter(cfg):
    torch.manual_seed(0)
    arch = arch_of((2, 5, 7, 3))
    net = DWSNet(arch, 3, hidden=4, depth=3, head_hidden=(8,), **cfg).to(DT)
    net(rand_weights(arch, b=6)).pow(2).sum().backward()
    for name, p in net.named_parameters():
        if cfg.get("norm") == "batch" and re.fullmatch(r"trunk\.layers\.\d+\.bias", name):
            # a per-(tensor, channel) bias is exactly removed by the batch norm after it (its
            # gradient is rounding noise, ~1e-16): a known redundancy, like a conv bias before BN
            continue
        assert p.grad is not None and p.grad.abs().max() > 1e-8, name

    eq = DWSNetEquivariant(arch, hidden=4, depth=3, residual=True, **{k: v for k, v in cfg.items()
                                                                      if k not in ("head_pool", "residual")}).to(DT)
    out = eq(rand_weights(arch, b=6))
    out.flatten().pow(2).sum().backward()
    for name, p in eq.named_parameters():
        if cfg.get("norm") == "batch" and re.fullmatch(r"trunk\.layers\.[01]\.bias", name):
            continue  # followed by batch norm (the last, plain layer is not), as above
        assert p.grad is not None and p.grad.abs().max() > 1e-8, name


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("residual", [False, True])
def test_equivariant_net(widths, residual):
    torch.manual_seed(0)
    arch = arch_of(widths)
    net = DWSNetEquivariant(arch, hidden=4, depth=3, residual=residual, norm="layer", block_residual=True).to(DT)
    w = rand_weights(arch)
    out = net(w)
    assert isinstance(out, Weights) and out.arch == arch
    assert [t.shape for t in out.tensors()] == [t.shape for t in w.tensors()]
    perms = rand_perms(arch, len(w))
    assert_close(net(permute_weights(w, perms)).flatten(), permute_weights(out, perms).flatten())
    if residual:
        with torch.no_grad():
            net.scale.zero_()
        assert_close(net(w).flatten(), w.flatten())


def test_bad_configs():
    arch = arch_of((2, 5, 3))
    with pytest.raises(InrforgeError):
        DWSNet(arch, 3, norm="group")
    with pytest.raises(InrforgeError):
        DWSNet(arch, 3, head_pool="median")
    with pytest.raises(InrforgeError):
        DWSNet(arch, 3, depth=0)
    with pytest.raises(InrforgeError, match="head_hidden"):
        DWSNet(arch, 3, head_hidden=(16, 0))  # used to build a Linear(n, 0): a constant model
    with pytest.raises(InrforgeError):
        DWSNet(arch, 3)(rand_weights(arch_of((2, 4, 3))))


@pytest.mark.parametrize("build, message", [
    (lambda a: DWSNet(a, 2.5), "DWSNet out_features must be a positive integer, got 2.5"),
    (lambda a: DWSNet(a, 3, hidden="8"), "DWSNet hidden must be a positive integer, got '8'"),
    (lambda a: DWSNet(a, 3, depth=0), "DWSNet depth must be a positive integer, got 0"),
    (lambda a: DWSNet(a, 3, head_hidden=(16, 0)), "DWSNet head_hidden widths must be a positive integer, got 0"),
    (lambda a: DWSNet(a, 3, dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    (lambda a: DWSNet(a.to_dict(), 3), "DWSNet needs an INRSpec as arch"),
    (lambda a: DWSNetEquivariant("siren"), "DWSNetEquivariant needs an INRSpec as arch"),
    (lambda a: DWSNetEquivariant(a, depth=1.5), "DWSNetEquivariant depth must be a positive integer, got 1.5"),
])
def test_bad_constructor_arguments_are_one_line_errors(build, message):
    with pytest.raises(InrforgeError) as e:
        build(arch_of((2, 5, 3)))
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("cfg", NET_CONFIGS, ids=["plain", "bn-res-max", "ln-sum-attn"])
def test_an_empty_batch_gives_an_empty_output(cfg):
    arch = arch_of((2, 5, 7, 3))
    empty = Weights.from_flat(torch.zeros(0, arch.param_count, dtype=DT), arch)
    for mode in (True, False):
        assert DWSNet(arch, 5, hidden=4, depth=2, **cfg).to(DT).train(mode)(empty).shape == (0, 5)
        trunk = {k: v for k, v in cfg.items() if k != "head_pool"}
        out = DWSNetEquivariant(arch, hidden=4, depth=2, **trunk).to(DT).train(mode)(empty)
        assert len(out) == 0 and out.arch == arch


def test_batch_norm_refuses_a_single_inr_only_in_training():
    arch = arch_of((2, 5, 7, 3))
    net = DWSNet(arch, 5, hidden=4, depth=2, norm="batch").to(DT)
    one = rand_weights(arch)[:1]
    with pytest.raises(InrforgeError, match="^batch norm needs at least 2 INRs per training batch"):
        net.train()(one)
    assert net.eval()(one).shape == (1, 5)


def test_training_learns():
    """An invariant regression target from random weights: the loss falls by far in 100 steps."""
    torch.manual_seed(0)
    arch = arch_of((2, 8, 8, 2))
    w = rand_weights(arch, b=256, seed=1, dtype=torch.float32)
    # invariant target: needs the last bias (kept whole), the pooled b0 and the pooled W1 magnitude
    y = torch.stack([w.biases[-1][:, 0] - w.biases[-1][:, 1],
                     w.biases[0].mean(1) + w.weights[1].abs().mean((1, 2))], 1)
    net = DWSNet(arch, 2, hidden=8, depth=2, head_hidden=(32,))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(w), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    assert math.isfinite(losses[-1])


@pytest.mark.parametrize("pool, ref", [("mean", lambda x, d: x.mean(d)), ("sum", lambda x, d: x.sum(d)),
                                       ("max", lambda x, d: x.amax(d))])
def test_pools_are_what_they_are_named(pool, ref):
    """Equivariance, completeness and parameter counts hold whatever a pool computes: check the
    reductions themselves, and the invariant head's b_0 column against one pooled by hand."""
    from inrforge.models.dwsnet import pool_axis

    x = torch.randn(3, 5, 7, 2, dtype=torch.float64)
    for d in (1, 2):
        torch.testing.assert_close(pool_axis(x, d, pool), ref(x, d))
    arch = arch_of((2, 6, 6, 1))
    w = rand_weights(arch)
    out = InvariantPool(arch, 1, pool)(WSFeatures.from_weights(w))
    # slots in layout order: W0 pooled over d1 keeps d0 (2 columns), then b0 pooled over d1
    torch.testing.assert_close(out[:, 2], ref(w.biases[0], 1))
    torch.testing.assert_close(out[:, :2], ref(w.weights[0], 1))

import math

import pytest
import torch

from inrforge.arch import INRSpec, make_arch
from inrforge.augment import (
    Compose,
    GaussianNoise,
    MixUp,
    Permute,
    QuantilePrune,
    Rotate,
    Scale,
    SirenBiasShift,
    SirenNegate,
    Translate,
    WeightDropout,
)
from inrforge.errors import InrforgeError
from inrforge.inr import image_grid, render
from inrforge.weights import Weights

SIREN = make_arch("siren", hidden=16, depth=2)  # 2 -> 16 -> 16 -> 1
SIREN_DWS = make_arch("siren-dwsnets", hidden=16, depth=2)
SIREN3 = make_arch("siren", hidden=12, depth=3, out_features=3)  # depth-3, 3 outputs
RELU = make_arch("relu", hidden=16, depth=2)
FOURIER = make_arch("relu-fourier", hidden=16, depth=2, fourier_features=8)
ARCH3D = make_arch("siren", in_features=3, hidden=8, depth=2)
SIRENS = [SIREN, SIREN_DWS, SIREN3]


def batch(arch: INRSpec, n: int = 6, seed: int = 0, perturb: float = 0.0) -> Weights:
    """Float64 INRs; ``perturb`` adds noise so zero biases (dwsnets init) become non-trivial."""
    flat = arch.init_flat(range(seed, seed + n)).double()
    if perturb:
        g = torch.Generator().manual_seed(seed + 1000)
        flat = flat + perturb * torch.randn(flat.shape, generator=g, dtype=torch.float64)
    return Weights.from_flat(flat, arch)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coords(arch, n=200, seed=5):
    if arch.in_features == 2:
        return image_grid(12, 12).double()
    return torch.rand(n, arch.in_features, generator=gen(seed), dtype=torch.float64) * 2 - 1


def max_diff(a, b):
    return (a - b).abs().max().item()


# ----- exact symmetries -------------------------------------------------------------------------
@pytest.mark.parametrize("arch", SIRENS + [RELU, FOURIER], ids=lambda a: f"{a.family}{a.widths}")
def test_permute_is_exact_and_changes_weights(arch):
    w = batch(arch, perturb=0.05)
    out = Permute()(w, generator=gen(1))
    x = coords(arch)
    assert max_diff(render(out, x), render(w, x)) < 1e-10
    assert not torch.equal(out.flatten(), w.flatten())
    # Only a permutation: every layer's multiset of values is kept.
    assert torch.equal(out.flatten().sort(dim=1).values, w.flatten().sort(dim=1).values)


@pytest.mark.parametrize("arch", SIRENS, ids=lambda a: f"{a.init}{a.widths}")
@pytest.mark.parametrize("aug", [SirenNegate(), SirenNegate(p=1.0), SirenBiasShift(), SirenBiasShift(max_k=1)],
                         ids=repr)
def test_siren_symmetries_are_exact(arch, aug):
    w = batch(arch, perturb=0.05)
    out = aug(w, generator=gen(2))
    x = coords(arch)
    assert max_diff(render(out, x), render(w, x)) < 1e-9
    assert not torch.equal(out.flatten(), w.flatten())


def test_siren_negate_and_bias_shift_structure():
    w = batch(SIREN, n=200, perturb=0.05)
    neg = SirenNegate(p=0.3)(w, generator=gen(3))
    ratio = neg.biases[0] / w.biases[0]
    assert torch.allclose(ratio.abs(), torch.ones_like(ratio))
    assert abs((ratio < 0).double().mean().item() - 0.3) < 0.03
    # Output layer's bias is never touched.
    assert torch.equal(neg.biases[-1], w.biases[-1])
    shift = SirenBiasShift(max_k=2)(w, generator=gen(4))
    k = (shift.biases[1] - w.biases[1]) * SIREN.w0 / math.pi
    assert torch.allclose(k, k.round(), atol=1e-9)
    assert set(k.round().long().unique().tolist()) == {-2, -1, 0, 1, 2}
    sign = shift.weights[2] / w.weights[2]
    assert torch.allclose(sign[:, 0, :], (-1.0) ** k.round(), atol=1e-12)


def test_permute_negate_compose_is_exact_on_float32_too():
    arch = make_arch("siren-dwsnets")
    w = Weights.from_flat(arch.init_flat(range(4)), arch)
    out = Compose([Permute(), SirenNegate(), SirenBiasShift(max_k=1)])(w, generator=gen(0))
    x = image_grid(8, 8)
    assert max_diff(render(out, x), render(w, x)) < 1e-4
    assert not torch.equal(out.flatten(), w.flatten())  # and the weights did change


# ----- input-space transforms -------------------------------------------------------------------
def rot(theta):
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


@pytest.mark.parametrize("arch", [SIREN, SIREN_DWS, RELU], ids=lambda a: f"{a.init}{a.widths}")
def test_rotate_is_f_of_R_x(arch):
    w = batch(arch, n=4, perturb=0.05)
    aug = Rotate(max_angle=45)
    angles = aug.sample(w, gen(7))
    assert angles.abs().max() <= math.radians(45)
    out = aug.apply(w, angles)
    x = coords(arch)
    got = render(out, x)
    for k in range(len(w)):  # independent check, one sample at a time: f'(x) = f(R x)
        want = render(w[k], x @ rot(angles[k].item()).T)
        assert max_diff(got[k], want[0]) < 1e-10
    # transform_coords states the same T; and __call__ with the same seed draws the same angles
    assert max_diff(got, render(w, Rotate.transform_coords(x, angles))) < 1e-10
    assert torch.equal(aug(w, generator=gen(7)).flatten(), out.flatten())


def test_a_positive_angle_turns_the_image_clockwise():
    w = batch(SIREN, n=2, perturb=0.05)
    img = render(w, image_grid(12, 12).double()).reshape(2, 12, 12)
    turned = render(Rotate().apply(w, torch.full((2,), math.pi / 2, dtype=torch.float64)),
                    image_grid(12, 12).double()).reshape(2, 12, 12)
    assert max_diff(turned, torch.rot90(img, k=-1, dims=(1, 2))) < 1e-10  # as docs/augmentations.md says


@pytest.mark.parametrize("arch", [SIREN3, RELU, ARCH3D], ids=lambda a: f"{a.family}{a.widths}")
def test_scale_and_translate_are_exact(arch):
    w = batch(arch, n=4, perturb=0.05)
    x = coords(arch)
    sc = Scale(0.5, 2.0)
    s = sc.sample(w, gen(8))
    assert ((s >= 0.5) & (s <= 2.0)).all() and s.std() > 0
    got = render(sc.apply(w, s), x)
    want = torch.cat([render(w[k], s[k].item() * x) for k in range(len(w))])
    assert max_diff(got, want) < 1e-10
    tr = Translate(0.3)
    t = tr.sample(w, gen(9))
    assert t.shape == (4, arch.in_features) and t.abs().max() <= 0.3
    got = render(tr.apply(w, t), x)
    want = torch.cat([render(w[k], x + t[k]) for k in range(len(w))])
    assert max_diff(got, want) < 1e-10
    assert max_diff(got, render(w, Translate.transform_coords(x, t))) < 1e-10


def test_translate_is_exact_with_fourier_features():
    w = batch(FOURIER, n=4, perturb=0.05)
    x = coords(FOURIER)
    tr = Translate(0.5)
    t = tr.sample(w, gen(10))
    got = render(tr.apply(w, t), x)
    want = torch.cat([render(w[k], x + t[k]) for k in range(len(w))])
    assert max_diff(got, want) < 1e-9
    assert max_diff(got, render(w, x)) > 1e-3


# ----- errors -----------------------------------------------------------------------------------
def test_incompatible_archs_raise():
    relu = batch(RELU, n=2)
    for aug in (SirenNegate(), SirenBiasShift()):
        with pytest.raises(InrforgeError, match="SIREN"):
            aug(relu)
    with pytest.raises(InrforgeError, match="2-D"):
        Rotate()(batch(ARCH3D, n=2))
    for aug in (Rotate(), Scale()):
        with pytest.raises(InrforgeError, match="Fourier"):
            aug(batch(FOURIER, n=2))
    with pytest.raises(InrforgeError, match="Fourier"):
        Compose([Permute(), Rotate()])(batch(FOURIER, n=2))
    with pytest.raises(InrforgeError):
        Permute()(torch.zeros(3, 4))


@pytest.mark.parametrize("build, message", [
    (lambda: SirenNegate(p=1.5), "SirenNegate p must be in [0, 1], got 1.5"),
    (lambda: SirenNegate(p="0.5"), "SirenNegate p must be in [0, 1], got '0.5'"),
    (lambda: WeightDropout(p=1.0, rescale=True), "WeightDropout p must be in [0, 1), got 1.0"),
    (lambda: QuantilePrune(q_max=2), "QuantilePrune q_max must be in [0, 1], got 2"),
    (lambda: Scale(2, 1), "Scale needs lo <= hi, got lo=2, hi=1"),
    (lambda: Scale("a"), "Scale lo must be a finite number, got 'a'"),
    (lambda: Scale(0.8, float("inf")), "Scale hi must be a finite number, got inf"),
    (lambda: Rotate(None), "Rotate max_angle (degrees) must be a number >= 0, got None"),
    (lambda: Rotate(-5), "Rotate max_angle (degrees) must be a number >= 0, got -5"),
    (lambda: Translate(float("nan")), "Translate max_shift must be a number >= 0, got nan"),
    (lambda: GaussianNoise(rel_std=True), "GaussianNoise rel_std must be a number >= 0, got True"),
    (lambda: SirenBiasShift(max_k=-1), "SirenBiasShift max_k must be an integer >= 0, got -1"),
    (lambda: SirenBiasShift(max_k="a"), "SirenBiasShift max_k must be an integer >= 0, got 'a'"),
    (lambda: MixUp(mode="nope"), "unknown MixUp mode 'nope'"),
    (lambda: MixUp(alpha=0), "MixUp alpha must be a positive number, got 0"),
    (lambda: MixUp(num_classes="x"), "MixUp num_classes must be a positive integer, got 'x'"),
    (lambda: MixUp(num_classes=2.5), "MixUp num_classes must be a positive integer, got 2.5"),
    (lambda: MixUp(mode="align", align_max_iter=0), "MixUp align_max_iter must be a positive integer, got 0"),
])
def test_bad_augmentation_settings_are_refused_when_built(build, message):
    """Refused in the constructor, with the setting's name and value, never at the first call
    (nor as Python's own ValueError / TypeError from ``float('a')`` or ``'a' < 0``)."""
    with pytest.raises(InrforgeError) as e:
        build()
    assert str(e.value).startswith(message)


def test_settings_given_as_0d_tensors_or_integral_floats_are_taken():
    assert Rotate(torch.tensor(30.0)).max_angle == 30.0 and SirenNegate(torch.tensor(0.25)).p == 0.25
    assert MixUp(mode="align", align_max_iter=50.0).align_max_iter == 50  # as JSON gives it


# ----- not function-preserving ------------------------------------------------------------------
def test_gaussian_noise_is_relative_per_sample_and_tensor():
    w = batch(SIREN, n=64)
    big = w.map(lambda t: t.clone())
    big.weights[1][:32] *= 100.0  # half the batch has a 100x larger W_1
    out = GaussianNoise(rel_std=0.32)(big, generator=gen(11))
    noise = out.weights[1] - big.weights[1]
    ratio = noise.reshape(64, -1).std(dim=1) / big.weights[1].reshape(64, -1).std(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.32), rtol=0.25)
    assert torch.equal(out.biases[-1], big.biases[-1])  # one entry per sample: std 0, no noise
    assert not torch.equal(out.weights[0], big.weights[0])


def test_dropout_zeroes_about_p():
    w = batch(SIREN, n=32, perturb=0.05)
    out = WeightDropout(p=0.2)(w, generator=gen(12))
    flat, new = w.flatten(), out.flatten()
    zeroed = (new == 0) & (flat != 0)
    assert abs(zeroed.double().mean().item() - 0.2) < 0.02
    assert torch.equal(new[~zeroed], flat[~zeroed])  # survivors unchanged (no rescale)
    resc = WeightDropout(p=0.2, rescale=True)(w, generator=gen(12)).flatten()
    assert torch.allclose(resc[~zeroed], flat[~zeroed] / 0.8)


def test_quantile_prune_zeroes_q_fraction_of_smallest():
    w = batch(SIREN, n=200, perturb=0.05)
    out = QuantilePrune(q_max=0.3)(w, generator=gen(13))
    flat, new = w.flatten(), out.flatten()
    p = flat.shape[1]
    frac = (new == 0).double().mean(dim=1)
    assert frac.max() <= 0.3 + 1.0 / p and frac.min() >= 0.0
    q = torch.rand(200, generator=gen(13), dtype=torch.float64) * 0.3  # the generator's first draw
    assert torch.equal(((new == 0) & (flat != 0)).sum(1), torch.floor(q * p).long())  # exactly floor(q P)
    assert abs(frac.mean().item() - 0.15) < 0.02  # q ~ U(0, 0.3)
    assert frac.std() > 0.05  # q differs per sample
    pruned = new == 0
    kept = ~pruned
    # everything pruned is no larger in magnitude than anything kept, in each sample
    max_pruned = flat.abs().masked_fill(kept, 0).max(dim=1).values
    min_kept = flat.abs().masked_fill(pruned, float("inf")).min(dim=1).values
    assert (max_pruned <= min_kept).all()
    assert torch.equal(new[kept], flat[kept])


@pytest.mark.parametrize(
    "make",
    [Permute, SirenNegate, SirenBiasShift, Rotate, Scale, Translate, GaussianNoise, WeightDropout, QuantilePrune],
    ids=lambda c: c.__name__,
)
def test_determinism_under_seeded_generator(make):
    w = batch(SIREN, n=8, perturb=0.05)
    a = make()(w, generator=gen(42)).flatten()
    b = make()(w, generator=gen(42)).flatten()
    c = make()(w, generator=gen(43)).flatten()
    d = make(generator=gen(42))(w).flatten()  # construction-time generator
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.equal(a, c)


# ----- MixUp ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["vanilla", "perm", "align"])
def test_mixup_weights_and_class_labels(mode):
    w = batch(SIREN, n=10, perturb=0.05)
    labels = torch.arange(10) % 4
    m = MixUp(mode=mode, num_classes=4)
    r = m.mix(w, labels, generator=gen(14))
    assert (r.partner != torch.arange(10)).all()  # a derangement: never mixed with itself
    assert sorted(r.partner.tolist()) == list(range(10))
    assert ((r.lam >= 0) & (r.lam <= 1)).all()
    lam = r.lam.view(-1, 1)
    a, p = w.flatten(), r.partner_weights.flatten()
    assert torch.allclose(r.weights.flatten() - p, lam * (a - p), atol=1e-12)
    if mode == "vanilla":
        assert torch.equal(p, w.flatten()[r.partner])
    else:  # the partner is a re-permuted copy: same function as the batch partner
        x = coords(SIREN)
        assert max_diff(render(r.partner_weights, x), render(w[r.partner], x)) < 1e-9
    assert r.labels.shape == (10, 4) and r.labels.dtype == torch.float64
    assert torch.allclose(r.labels.sum(1), torch.ones(10, dtype=torch.float64))
    onehot = torch.nn.functional.one_hot(labels, 4).double()
    assert torch.allclose(r.labels, lam * onehot + (1 - lam) * onehot[r.partner])
    w2, l2 = m(w, labels, generator=gen(14))  # __call__ == mix
    assert torch.equal(w2.flatten(), r.weights.flatten()) and torch.equal(l2, r.labels)


def test_mixup_float_labels_alpha_and_errors():
    w = batch(SIREN, n=16)
    reg = torch.randn(16, 3, generator=gen(1), dtype=torch.float64)
    r = MixUp(alpha=0.4).mix(w, reg, generator=gen(15))
    lam = r.lam.view(-1, 1)
    assert torch.allclose(r.labels, lam * reg + (1 - lam) * reg[r.partner])
    r1 = MixUp(alpha=0.4).mix(w, reg[:, 0], generator=gen(15))
    assert torch.allclose(r1.labels, r.labels[:, 0])
    soft = torch.softmax(reg, dim=1)
    assert torch.allclose(MixUp().mix(w, soft, generator=gen(2)).labels.sum(1), torch.ones(16, dtype=torch.float64))
    # Beta(0.4, 0.4) is U-shaped: many lambdas near 0 or 1; reproducible
    lam_many = MixUp(alpha=0.4).mix(batch(SIREN, n=400), generator=gen(3)).lam
    assert ((lam_many < 0.1) | (lam_many > 0.9)).double().mean() > 0.35
    assert torch.equal(lam_many, MixUp(alpha=0.4).mix(batch(SIREN, n=400), generator=gen(3)).lam)
    from scipy import stats

    for alpha in (0.4, 2.0):  # the distribution itself: Beta(alpha, alpha), not only U-shaped
        lam = MixUp(alpha=alpha).mix(batch(make_arch("siren", hidden=4), n=4000), generator=gen(0)).lam
        assert stats.kstest(lam.double().numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert MixUp()(w, None, generator=gen(4))[1] is None
    with pytest.raises(InrforgeError, match="num_classes"):
        MixUp()(w, torch.zeros(16, dtype=torch.int64))
    with pytest.raises(InrforgeError):
        MixUp(num_classes=3)(w, torch.full((16,), 5))
    with pytest.raises(InrforgeError):
        MixUp(num_classes=3)(w, torch.zeros(15, dtype=torch.int64))


def test_align_to_is_a_pure_function_of_the_inr():
    """The same INR gets the same canonical form under any global RNG state, call generator or
    batch; with a layer order left to the global RNG some INRs got another (equally exact) form."""
    from inrforge.augment import AlignTo

    arch = make_arch("siren-dwsnets", hidden=16, depth=3)  # 3 hidden layers: the order matters
    w = batch(arch, n=24, seed=3, perturb=0.05)
    align = AlignTo(batch(arch, n=1, seed=100, perturb=0.05))
    torch.manual_seed(0)
    first = align(w).flatten()
    for seed in range(1, 6):
        torch.manual_seed(seed)
        assert torch.equal(align(w, generator=gen(seed)).flatten(), first)
    assert torch.equal(torch.cat([align(w[i:i + 1]).flatten() for i in (0, 7, 23)]), first[[0, 7, 23]])
    out = align(w)
    assert max_diff(render(out, coords(arch)), render(w, coords(arch))) < 1e-9  # still exact
    assert not torch.equal(AlignTo(align.reference, seed=1)(w).flatten(), first)  # the seed picks the order


def test_align_to_gives_every_permutation_of_an_inr_one_form():
    """AlignTo(P theta) == AlignTo(theta) for INRs near the reference: a canonical form of the
    permutation orbit (the best-of-identity start gave theta and P theta different forms)."""
    from inrforge.align import apply_permutation, random_permutations
    from inrforge.augment import AlignTo

    arch = make_arch("siren-dwsnets", hidden=16, depth=2)
    ref = batch(arch, n=1, seed=100, perturb=0.05)
    near = Weights.from_flat(ref.flatten().expand(40, -1) + ref.flatten().std()
                             * torch.randn(40, arch.param_count, generator=gen(2), dtype=torch.float64), arch)
    align = AlignTo(ref)
    shuffled = apply_permutation(near, random_permutations(arch, 40, gen(3)))
    assert torch.equal(align(shuffled).flatten(), align(near).flatten())
    with pytest.raises(InrforgeError, match="seed must be an integer >= 0"):
        AlignTo(ref, seed=True)


def test_mixup_align_brings_partner_closer():
    w = batch(SIREN_DWS, n=12, perturb=0.02)
    r = MixUp(mode="align").mix(w, generator=gen(16))
    before = (w.flatten() - w.flatten()[r.partner]).norm(dim=1)
    after = (w.flatten() - r.partner_weights.flatten()).norm(dim=1)
    assert (after <= before + 1e-12).all() and (after < before).any()


# ----- Compose ----------------------------------------------------------------------------------
def test_compose_order_labels_and_determinism():
    w = batch(SIREN, n=8, perturb=0.05)
    labels = torch.arange(8) % 3
    comp = Compose([Permute(), SirenNegate(), MixUp(num_classes=3), GaussianNoise(0.0)])
    w1, l1 = comp(w, labels, generator=gen(17))
    w2, l2 = comp(w, labels, generator=gen(17))
    assert torch.equal(w1.flatten(), w2.flatten()) and torch.equal(l1, l2)
    assert l1.shape == (8, 3) and torch.allclose(l1.sum(1), torch.ones(8, dtype=torch.float64))
    # Same result as applying the members by hand with one shared generator
    g = gen(17)
    h = SirenNegate()(Permute()(w, generator=g), generator=g)
    h, lh = MixUp(num_classes=3)(h, labels, generator=g)
    assert torch.allclose(w1.flatten(), h.flatten()) and torch.equal(l1, lh)
    # Without labels a Compose returns just Weights; symmetries-only compose is exact
    out = Compose([Permute(), SirenNegate(), SirenBiasShift()])(w, generator=gen(18))
    assert isinstance(out, Weights)
    x = coords(SIREN)
    assert max_diff(render(out, x), render(w, x)) < 1e-9


def test_labels_given_to_a_single_network_augmentation_are_a_clear_error():
    w = batch(SIREN, n=3)
    with pytest.raises(InrforgeError, match=r"Permute takes \(weights, generator=None\), got a Tensor"):
        Permute()(w, torch.zeros(3, dtype=torch.long))
    assert torch.equal(Compose([Permute()])(w, torch.zeros(3, dtype=torch.long))[1], torch.zeros(3, dtype=torch.long))


def test_compose_of_one_augmentation_not_in_a_list_is_a_clear_error():
    for bad in (Permute(), 3):
        with pytest.raises(InrforgeError, match=r"^Compose takes a list of augmentations \(Compose\(\[a, b\]\)\), got"):
            Compose(bad)
    with pytest.raises(InrforgeError, match="Compose needs callables, got 3"):
        Compose([Permute(), 3])


# ----- edge cases -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "aug",
    [Permute(), SirenNegate(), SirenBiasShift(), Rotate(), Scale(), Translate(), GaussianNoise(), WeightDropout(),
     QuantilePrune(), MixUp("vanilla", num_classes=3), MixUp("perm", num_classes=3), MixUp("align", num_classes=3)],
    ids=repr,
)
def test_empty_batch_passes_through(aug):
    """A filtered batch can be empty: every augmentation returns an empty batch, not a crash."""
    w = batch(SIREN, n=3)[torch.zeros(3, dtype=torch.bool)]
    if isinstance(aug, MixUp):
        out, labels = aug(w, torch.zeros(0, dtype=torch.long), generator=gen(0))
        assert labels.shape == (0, 3)
    else:
        out = aug(w, generator=gen(0))
    assert len(out) == 0 and out.flatten().shape == (0, SIREN.param_count)


def test_generator_mixups_are_clear_errors():
    w = batch(SIREN, n=4)
    for aug in (MixUp(), Compose([Permute()])):
        with pytest.raises(InrforgeError, match="Generator was given as labels"):
            aug(w, gen(0))  # a generator passed positionally, where the labels go
    for make in (lambda: Permute(generator=0), lambda: SirenNegate(0.5, 42), lambda: MixUp(generator=0),
                 lambda: Compose([Permute()], generator=0)):
        with pytest.raises(InrforgeError, match="must be a torch.Generator"):
            make()  # a seed is not a generator
    with pytest.raises(InrforgeError, match="must be a torch.Generator"):
        MixUp()(w, None, generator=0)


def test_input_transform_params_are_checked():
    w = batch(SIREN, n=4)
    for aug, bad in ((Rotate(), torch.zeros(3)), (Rotate(), torch.tensor(0.3)), (Scale(), torch.ones(1)),
                     (Scale(), 2.0), (Translate(), torch.zeros(4, 3))):
        with pytest.raises(InrforgeError, match="one row per INR"):
            aug.apply(w, bad)
    # params need not be tensors
    x = coords(SIREN)
    s = [0.5, 1.0, 1.5, 2.0]
    assert max_diff(render(Scale().apply(w, s), x), render(w, Scale.transform_coords(x, s))) < 1e-10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transform_coords_follow_the_coords_device():
    w = batch(SIREN, n=2).to("cuda")
    x = coords(SIREN)  # on the CPU, as image_grid makes it
    for aug in (Rotate(), Scale(), Translate()):
        p = aug.sample(w, gen(0))  # on the weights' device
        assert p.device.type == "cuda"
        tx = aug.transform_coords(x, p)
        assert tx.device == x.device
        assert max_diff(render(aug.apply(w, p), x).cpu(), render(w, tx).cpu()) < 1e-10


def test_transform_coords_take_shared_or_per_sample_coords():
    """The (B, N, in) coordinates that ``render`` accepts: each sample's own grid is transformed
    with its own param, exactly as the shared grid is, and a batch mismatch is refused."""
    w = batch(SIREN, n=3, perturb=0.05)
    x = coords(SIREN)
    per_sample = torch.stack([x, 0.5 * x, x.flip(0)])
    for aug in (Rotate(), Scale(), Translate()):
        p = aug.sample(w, gen(1))
        shared = aug.transform_coords(x, p)
        assert shared.shape == (3, *x.shape)
        own = aug.transform_coords(per_sample, p)
        for k in range(3):
            assert torch.equal(own[k], aug.transform_coords(per_sample[k], p[k : k + 1])[0])
        assert max_diff(render(aug.apply(w, p), per_sample), render(w, own)) < 1e-10
        with pytest.raises(InrforgeError, match=r"transform_coords takes coords \(N, in\) or \(B, N, in\) for 3 params"):
            aug.transform_coords(per_sample[:2], p)

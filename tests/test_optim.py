"""inrforge.optim: the warm-up + cosine schedule's factors, the optimizer step, the best-checkpoint keeper."""

import math

import pytest
import torch

from inrforge import InrforgeError
from inrforge.optim import BestKeeper, optimizer_step, warmup_cosine


def factors(warmup, total, steps, lr=2.0):
    """The learning rate / lr after 0, 1, ..., steps - 1 scheduler steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = warmup_cosine(opt, warmup, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"] / lr)
        opt.step()
        sched.step()
    return out


def test_warmup_is_linear_from_one_over_w_then_cosine_to_zero():
    f = factors(4, 12, 15)
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # (s + 1) / w
    for s in range(4, 15):  # (1 + cos(pi * min(1, (s - w) / (T - w)))) / 2
        assert f[s] == 0.5 * (1 + math.cos(math.pi * min(1.0, (s - 4) / 8)))
    assert f[4] == 1.0 and f[8] == pytest.approx(0.5) and f[12] == 0.0
    assert f[12:] == [0.0, 0.0, 0.0]  # stays at 0 after the last step
    assert all(a >= b for a, b in zip(f[3:], f[4:]))  # decreasing once warm


def test_no_warmup_is_a_plain_cosine_and_short_runs_do_not_divide_by_zero():
    f = factors(0, 4, 5)
    assert f[0] == 1.0 and f[2] == pytest.approx(0.5) and f[4] == 0.0
    assert f[1] == 0.5 * (1 + math.cos(math.pi * (1 / 4)))
    assert factors(3, 3, 5) == [1 / 3, 2 / 3, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi))]  # T - w = 0: max(1, .)
    assert factors(1, 0, 3) == [1.0, 1.0, 0.0]  # T < w: the warm-up, then from 1 straight to 0


def test_schedule_steps_are_checked():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for bad in (-1, 1.5, True):
        with pytest.raises(InrforgeError, match="warmup_steps must be an integer >= 0"):
            warmup_cosine(opt, bad, 10)
    with pytest.raises(InrforgeError, match="total_steps must be an integer >= 0"):
        warmup_cosine(opt, 1, -2)


@pytest.mark.parametrize("clip", [None, 0, 0.5])
def test_optimizer_step_clips_then_steps_both(clip):
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_cosine(opt, 2, 10)
    p.grad = torch.ones(2)  # stale: zeroed first
    optimizer_step((p * p).sum() / 2, opt, sched, [p], clip)  # grad = p = (3, 4), norm 5
    want = torch.tensor([3.0, 4.0]) * (1 - 0.5 * (clip / 5 if clip else 1))  # lr 1/2 in the first step
    torch.testing.assert_close(p.detach(), want)
    assert opt.param_groups[0]["lr"] == 1.0  # the scheduler stepped


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def test_keeper_keeps_a_copy_of_the_best_and_counts_since():
    m, k = Tiny(), BestKeeper()
    assert (k.score, k.state, k.epoch, k.since) == (None, None, -1, 0)
    assert not k.restore(m)
    with torch.no_grad():
        m.w.fill_(1.0)
    assert k.offer(0.5, m, 0)
    with torch.no_grad():
        m.w.fill_(2.0)  # the kept state is a copy, not the live tensor
    assert not k.offer(0.5, m, 1)  # a tie is no improvement
    assert not k.offer(0.4, m, 2)
    assert (k.score, k.epoch, k.since) == (0.5, 0, 2)
    assert k.restore(m) and m.w.tolist() == [1.0, 1.0]
    assert k.offer(0.9, m, 3) and (k.score, k.epoch, k.since) == (0.9, 3, 0)


def test_keeper_lower_better_and_non_finite_scores():
    m, k = Tiny(), BestKeeper(higher_better=False)
    assert not k.offer(math.nan, m, 0) and not k.offer(-math.inf, m, 1)  # never the best
    assert k.state is None and k.since == 2
    assert k.offer(3.0, m, 2) and not k.offer(3.5, m, 3) and k.offer(1.0, m, 4)
    assert not k.offer(math.nan, m, 5)
    assert (k.score, k.epoch, k.since) == (1.0, 4, 1)


def test_keeper_keep_takes_the_state_without_a_score():
    m, k = Tiny(), BestKeeper()
    with torch.no_grad():
        m.w.fill_(7.0)
    k.keep(m, 3)
    with torch.no_grad():
        m.w.zero_()
    assert k.epoch == 3 and k.score is None and k.restore(m) and m.w.tolist() == [7.0, 7.0]

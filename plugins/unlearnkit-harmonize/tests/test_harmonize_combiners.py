"""Behaviour of the four combiners against the formulas they implement."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import unlearnkit as uk
from unlearnkit.core.plugins import registry
from unlearnkit.testing.combiner_contract import gradient_pairs

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
float64_pairs = gradient_pairs(dtypes=(torch.float64,))


def flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in ts]) if ts else torch.zeros(0, dtype=torch.float64)


def peak(ts: list[torch.Tensor]) -> float:
    v = flat(ts)
    return float(v.abs().max()) if v.numel() else 0.0


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(flat(a) @ flat(b))


def reference(remember: list[torch.Tensor], forget: list[torch.Tensor], protect: str) -> torch.Tensor:
    """Eq. 12 on one concatenated float64 vector."""
    r, f = flat(remember), flat(forget)
    rf = float(r @ f)
    if rf >= 0:
        return r + f
    if protect == "remember":
        return r + f - (rf / float(r @ r)) * r
    if protect == "forget":
        return r - (rf / float(f @ f)) * f + f
    return (r - (rf / float(f @ f)) * f) + (f - (rf / float(r @ r)) * r)


def conflicting(seed: int, shapes=((3, 4), (5,), ())) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    remember = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    forget = [-r + 0.3 * torch.randn(r.shape, generator=g, dtype=torch.float64) for r in remember]
    assert dot(remember, forget) < 0
    return remember, forget


def test_plugin_registers_the_four_combiners_under_its_distribution():
    for name in ("harmonize", "sum", "pcgrad", "alternate"):
        assert registry.get("combiner", name).package == "unlearnkit-harmonize"


def test_harmonize_config_is_validated_with_the_field_path():
    assert uk.get_combiner("harmonize").config.protect == "remember"
    with pytest.raises(uk.ConfigError, match=r"\$\.harmonize\.protect: must be one of 'remember', 'forget', 'both', got 'all'"):
        uk.get_combiner("harmonize", protect="all")


@PROPERTY
@given(float64_pairs)
def test_harmonize_is_the_plain_sum_unless_the_gradients_conflict(pair):
    remember, forget = pair
    out = uk.get_combiner("harmonize").combine(remember, forget)
    # Clearly not conflicting: exactly the sum. Within rounding of zero the sign of g_r·g_f
    # depends on the summation order, and either branch gives the same vector to within it.
    if dot(remember, forget) > 1e-12 * float(flat(remember).norm() * flat(forget).norm()):
        for o, r, f in zip(out, remember, forget):
            assert torch.equal(o, r + f)
    torch.testing.assert_close(flat(out), reference(remember, forget, "remember"), rtol=1e-9, atol=1e-9 * peak(remember + forget))


@PROPERTY
@given(float64_pairs)
def test_harmonized_update_never_undoes_remembering(pair):
    """result·g_r = ‖g_r‖² whenever the gradients conflict, and the forget part is orthogonal to g_r."""
    remember, forget = pair
    if dot(remember, forget) >= 0:
        return
    out = uk.get_combiner("harmonize").combine(remember, forget)
    rr = dot(remember, remember)
    tol = 1e-9 * (rr + rr**0.5 * dot(forget, forget) ** 0.5)
    assert abs(dot(out, remember) - rr) <= tol
    forget_part = [o - r for o, r in zip(out, remember)]
    assert abs(dot(forget_part, remember)) <= tol


@PROPERTY
@given(float64_pairs)
def test_protect_forget_is_the_mirror_image(pair):
    remember, forget = pair
    mirrored = uk.get_combiner("harmonize", protect="forget").combine(remember, forget)
    swapped = uk.get_combiner("harmonize").combine(forget, remember)
    scale = peak(remember + forget)
    torch.testing.assert_close(flat(mirrored), flat(swapped), rtol=1e-9, atol=1e-9 * scale)
    torch.testing.assert_close(flat(mirrored), reference(remember, forget, "forget"), rtol=1e-9, atol=1e-9 * scale)
    if dot(remember, forget) < 0:
        ff = dot(forget, forget)
        assert abs(dot(mirrored, forget) - ff) <= 1e-9 * (ff + ff**0.5 * dot(remember, remember) ** 0.5)


@PROPERTY
@given(float64_pairs)
def test_pcgrad_is_symmetric_and_protect_both_is_pcgrad(pair):
    a, b = pair
    pcgrad = uk.get_combiner("pcgrad")
    ab, ba = pcgrad.combine(a, b), pcgrad.combine(b, a)
    for x, y in zip(ab, ba):
        assert torch.equal(x, y)
    both = uk.get_combiner("harmonize", protect="both").combine(a, b)
    for x, y in zip(ab, both):
        assert torch.equal(x, y)
    scale = peak(a + b)
    torch.testing.assert_close(flat(ab), reference(a, b, "both"), rtol=1e-9, atol=1e-9 * scale)


def test_pcgrad_projects_each_gradient_onto_the_others_normal_plane():
    remember, forget = [torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])]
    # g_r' = (1,0) + ½(−1,1) = (½,½); g_f' = (−1,1) + (1,0) = (0,1)
    assert torch.equal(uk.get_combiner("pcgrad").combine(remember, forget)[0], torch.tensor([0.5, 1.5]))
    assert torch.equal(uk.get_combiner("harmonize").combine(remember, forget)[0], torch.tensor([1.0, 1.0]))
    assert torch.equal(uk.get_combiner("harmonize", protect="forget").combine(remember, forget)[0], torch.tensor([-0.5, 1.5]))


def test_dot_products_are_global_not_per_layer():
    """Layer 0 conflicts, but the whole vectors agree: nothing is projected."""
    remember = [torch.tensor([1.0, 0.0]), torch.tensor([3.0])]
    forget = [torch.tensor([-1.0, 0.0]), torch.tensor([1.0])]
    out = uk.get_combiner("harmonize").combine(remember, forget)
    assert torch.equal(out[0], torch.tensor([0.0, 0.0])) and torch.equal(out[1], torch.tensor([4.0]))


@pytest.mark.parametrize("name", ["harmonize", "pcgrad"])
@pytest.mark.parametrize("protect", ["remember", "forget", "both"])
def test_a_zero_gradient_leaves_the_other_unchanged(name, protect):
    remember, forget = conflicting(0)
    combiner = uk.get_combiner(name) if name == "pcgrad" else uk.get_combiner(name, protect=protect)
    zeros = [torch.zeros_like(t) for t in remember]
    for out, expected in ((combiner.combine(zeros, forget), forget), (combiner.combine(remember, zeros), remember)):
        for o, e in zip(out, expected):
            assert torch.equal(o, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tiny", [1e-30, 1e-40])
@pytest.mark.parametrize("protect", ["remember", "forget"])
def test_a_tiny_protected_gradient_is_still_protected(dtype, tiny, protect):
    """No underflow shortcut: a 1e-30 protected gradient is projected out exactly as a unit one would be."""
    remember, forget = conflicting(1)
    remember, forget = [r.to(dtype) for r in remember], [f.to(dtype) for f in forget]
    if protect == "remember":
        remember = [(tiny * r.double()).to(dtype) for r in remember]
    else:
        forget = [(tiny * f.double()).to(dtype) for f in forget]
    out = uk.get_combiner("harmonize", protect=protect).combine(remember, forget)
    assert all(torch.isfinite(o).all() for o in out)
    expected = reference(remember, forget, protect)
    torch.testing.assert_close(flat(out), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    kept, other = (remember, forget) if protect == "remember" else (forget, remember)
    other_part = flat(out) - flat(kept)
    cosine = float(other_part @ flat(kept)) / (float(other_part.norm()) * float(flat(kept).norm()))
    assert abs(cosine) < 1e-4


def test_dot_products_stay_accurate_for_large_tiny_gradients():
    """Many elements at 1e-24: every float32 product underflows to 0, the exact fallback keeps the projection."""
    g = torch.Generator().manual_seed(6)
    r = torch.randn(300_000, generator=g, dtype=torch.float64)
    f = -r + 0.5 * torch.randn(300_000, generator=g, dtype=torch.float64)
    remember, forget = [(1e-24 * r).float()], [(1e-24 * f).float()]
    out = uk.get_combiner("harmonize").combine(remember, forget)
    expected = reference(remember, forget, "remember")
    torch.testing.assert_close(flat(out), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_combined_in_float32(dtype):
    remember, forget = conflicting(2)
    remember, forget = [r.to(dtype) for r in remember], [(100 * f).to(dtype) for f in forget]
    out = uk.get_combiner("harmonize").combine(remember, forget)
    assert [o.dtype for o in out] == [dtype] * len(out)
    expected = reference(remember, forget, "remember")
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(flat(out), expected, rtol=4 * eps, atol=4 * eps * float(expected.abs().max()))


def test_sum_adds():
    remember, forget = conflicting(3)
    for o, r, f in zip(uk.get_combiner("sum").combine(remember, forget), remember, forget):
        assert torch.equal(o, r + f)


def test_alternate_returns_forget_on_odd_remember_on_even_iterations_and_resets():
    remember, forget = conflicting(4)
    alternate = uk.get_combiner("alternate")
    expected = [forget, remember, forget, remember]
    for want in expected:
        out = alternate.combine(remember, forget)
        assert all(torch.equal(o, w) for o, w in zip(out, want))
        assert all(o.data_ptr() != w.data_ptr() for o, w in zip(out, want) if w.numel())
    alternate.combine(remember, forget)  # iteration 5 → forget; reset restarts at 1
    alternate.reset()
    assert all(torch.equal(o, f) for o, f in zip(alternate.combine(remember, forget), forget))


@pytest.mark.parametrize("name", ["harmonize", "sum", "pcgrad", "alternate"])
def test_mismatched_gradients_are_refused_with_the_position(name):
    combiner = uk.get_combiner(name)
    with pytest.raises(uk.UsageError, match="g_remember has 2 tensors but g_forget has 1"):
        combiner.combine([torch.zeros(2), torch.zeros(1)], [torch.zeros(2)])
    with pytest.raises(uk.UsageError, match=r"gradient 1: g_remember has shape \(3,\) but g_forget has \(2,\)"):
        combiner.combine([torch.zeros(2), torch.zeros(3)], [torch.zeros(2), torch.zeros(2)])


def test_empty_gradient_lists_give_an_empty_list():
    for name in ("harmonize", "sum", "pcgrad", "alternate"):
        assert uk.get_combiner(name).combine([], []) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("protect", ["remember", "forget", "both"])
def test_harmonize_on_cuda_matches_cpu(protect):
    remember, forget = conflicting(5)
    remember, forget = [r.float() for r in remember], [f.float() for f in forget]
    combiner = uk.get_combiner("harmonize", protect=protect)
    cpu = combiner.combine(remember, forget)
    cuda = combiner.combine([r.cuda() for r in remember], [f.cuda() for f in forget])
    for c, g in zip(cpu, cuda):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), c, rtol=1e-5, atol=1e-6)

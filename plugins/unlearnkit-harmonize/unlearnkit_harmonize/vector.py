"""Lists of parameter-shaped tensors treated as one flattened vector: checks, dot products, axpy.

No large tensor is copied into a flat vector: dot products run per tensor (the many small
tensors, such as biases and norm layers, share one concatenated product) and only the scalar
results are reduced across tensors, in float64, with one host synchronisation per call.
Products are accumulated in float32 (float64 for float64 inputs; float16/bfloat16 inputs are
upcast). When a result falls outside the band where flushed or overflowing float32 products
could matter (zero, tiny or huge vectors), the dot products are recomputed exactly in float64
after scaling each vector by a power of two.
"""

from __future__ import annotations

import math
from typing import Sequence

import attrs
import torch

from unlearnkit import UsageError

#: Dtypes computed in float32 (their products would lose range or precision).
_LOW_PRECISION = (torch.float16, torch.bfloat16)
#: Tensors with fewer elements than this share one concatenated dot product.
_SMALL = 1 << 16


def check_gradients(g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Both sequences as lists, after checking they pair up tensor by tensor."""
    remember, forget = list(g_remember), list(g_forget)
    if len(remember) != len(forget):
        raise UsageError(f"g_remember has {len(remember)} tensors but g_forget has {len(forget)}; pass one tensor per parameter in each")
    for i, (r, f) in enumerate(zip(remember, forget)):
        if not isinstance(r, torch.Tensor) or not isinstance(f, torch.Tensor):
            raise UsageError(f"gradient {i}: expected tensors, got {type(r).__name__} and {type(f).__name__}")
        if r.shape != f.shape:
            raise UsageError(f"gradient {i}: g_remember has shape {tuple(r.shape)} but g_forget has {tuple(f.shape)}")
        if r.dtype != f.dtype or r.device != f.device:
            raise UsageError(f"gradient {i}: g_remember is {r.dtype} on {r.device} but g_forget is {f.dtype} on {f.device}")
        if not r.is_floating_point():
            raise UsageError(f"gradient {i}: expected a floating-point tensor, got {r.dtype}")
    return remember, forget


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic on `dtype` tensors runs in: float32 for half types, else `dtype`."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


@attrs.frozen
class Dots:
    """g_r·g_f, ‖g_r‖², ‖g_f‖² of two flattened vectors, as `value · 2**(exponent)`.

    `rf = rf_hat · 2**(er + ef)`, `rr = rr_hat · 2**(2 er)`, `ff = ff_hat · 2**(2 ef)`; the
    exponents are 0 unless the vectors had to be rescaled to stay in range. A squared norm
    that was not asked for is None.
    """

    rf_hat: float
    rr_hat: float | None
    ff_hat: float | None
    er: int = 0
    ef: int = 0

    @property
    def conflict(self) -> bool:
        """Whether the two vectors point against each other: g_r·g_f < 0."""
        return self.rf_hat < 0

    def ratio_onto_remember(self) -> float:
        """(g_f·g_r) / ‖g_r‖², the coefficient of g_f's projection onto g_r; 0 when g_r = 0."""
        return _ratio(self.rf_hat, self.rr_hat, self.ef - self.er)

    def ratio_onto_forget(self) -> float:
        """(g_r·g_f) / ‖g_f‖², the coefficient of g_r's projection onto g_f; 0 when g_f = 0."""
        return _ratio(self.rf_hat, self.ff_hat, self.er - self.ef)


def _ratio(num: float, den: float | None, exponent: int) -> float:
    if den is None:
        raise ValueError("this squared norm was not computed; ask dots() for it")
    if den <= 0 or not math.isfinite(den) or not math.isfinite(num):
        return 0.0  # a zero (or non-finite) vector is never projected onto
    try:
        return math.ldexp(num / den, exponent)
    except OverflowError:
        return math.copysign(math.inf, num)


def dots(remember: list[torch.Tensor], forget: list[torch.Tensor], *, rr: bool = True, ff: bool = True) -> Dots:
    """g_r·g_f of two checked gradient lists, with ‖g_r‖² if `rr` and ‖g_f‖² if `ff`.

    The fast path is trusted when every computed quantity lies in a band where the rounding
    of under- or overflowing products is negligible: at least n·tiny·1e6 (relative error
    below 1e-6 from flushed products, n elements), at most max/100. Without both norms, g_r·g_f
    itself must lie in that band. Otherwise everything is recomputed exactly.
    """
    if not remember:
        return Dots(0.0, 0.0 if rr else None, 0.0 if ff else None)
    info = torch.finfo(working_dtype(remember[0].dtype))
    n = sum(t.numel() for t in remember)
    low, high = info.tiny * max(n, 1) * 1e6, info.max * 1e-2
    values = _dots(remember, forget, rr, ff, upcast=remember[0].dtype in _LOW_PRECISION)
    rf, norms = values[0], [v for v in values[1:] if v is not None]
    in_band = all(low <= v <= high for v in norms)
    if in_band and (len(norms) == 2 or low <= abs(rf) <= high):
        return Dots(*values)
    exact = _exact_dots(remember, forget)
    return Dots(exact.rf_hat, exact.rr_hat if rr else None, exact.ff_hat if ff else None, exact.er, exact.ef)


def _dots(remember: list[torch.Tensor], forget: list[torch.Tensor], rr: bool, ff: bool, upcast: bool) -> tuple[float, float | None, float | None]:
    pairs = [(r.reshape(-1), f.reshape(-1)) for r, f in zip(remember, forget)]
    small = [(r, f) for r, f in pairs if r.numel() < _SMALL]
    if len(small) > 1:  # one concatenated dot for the many small tensors (biases, norms): fewer dispatches
        pairs = [(r, f) for r, f in pairs if r.numel() >= _SMALL]
        pairs.append((torch.cat([r for r, _ in small]), torch.cat([f for _, f in small])))
    products = []
    for r, f in pairs:
        if upcast:
            r, f = r.float(), f.float()
        products.append(torch.dot(r, f))
        if rr:
            products.append(torch.dot(r, r))
        if ff:
            products.append(torch.dot(f, f))
    sums = torch.stack(products).to(torch.float64).view(len(pairs), -1).sum(0).tolist()
    rf = sums.pop(0)
    return rf, sums.pop(0) if rr else None, sums.pop(0) if ff else None


def _exponent(tensors: list[torch.Tensor]) -> int | None:
    """e such that max|x| lies in [2**(e-1), 2**e); None for a zero vector."""
    peaks = [torch.stack(torch.aminmax(t.detach())).abs().max() for t in tensors if t.numel()]
    peak = torch.stack(peaks).max().item() if peaks else 0.0
    if peak == 0 or not math.isfinite(peak):
        return None
    return math.frexp(peak)[1]


def _scaled64(t: torch.Tensor, exponent: int) -> torch.Tensor:
    x = t.reshape(-1).to(torch.float64)
    half = -exponent // 2  # two steps, so neither factor leaves float64's range
    return x * math.ldexp(1.0, half) * math.ldexp(1.0, -exponent - half)


def _exact_dots(remember: list[torch.Tensor], forget: list[torch.Tensor]) -> Dots:
    er = _exponent(remember)
    ef = _exponent(forget) if er is not None else None
    if er is None or ef is None:  # a zero (or non-finite) vector: nothing to project
        return Dots(0.0, 0.0 if er is None else 1.0, 0.0 if ef is None else 1.0)
    parts = []
    for r, f in zip(remember, forget):
        r64, f64 = _scaled64(r, er), _scaled64(f, ef)
        parts.append(torch.stack([torch.dot(r64, f64), torch.dot(r64, r64), torch.dot(f64, f64)]))
    rf_hat, rr_hat, ff_hat = torch.stack(parts).sum(0).tolist()
    return Dots(rf_hat, rr_hat, ff_hat, er, ef)


def axpy(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """A new tensor `x + alpha · y` in the dtype of `x`, exact in range whatever `alpha`."""
    work = working_dtype(x.dtype)
    if math.isfinite(alpha) and abs(alpha) <= torch.finfo(work).max * 1e-2:
        if work == x.dtype:
            return torch.add(x, y, alpha=alpha)
        return torch.add(x.to(work), y.to(work), alpha=alpha).to(x.dtype)
    if not math.isfinite(alpha):  # y is negligible next to x beyond float64's range
        return x.clone()
    # |alpha| overflows the working dtype while alpha·y (a projection, no longer than x) does not
    return torch.add(x.to(torch.float64), y.to(torch.float64), alpha=alpha).to(x.dtype)


def scaled_sum(x: torch.Tensor, alpha: float, y: torch.Tensor, beta: float) -> torch.Tensor:
    """A new tensor `alpha · x + beta · y`, symmetric: `scaled_sum(y, beta, x, alpha)` is bitwise equal."""
    work = working_dtype(x.dtype)
    limit = torch.finfo(work).max * 1e-2
    if not (math.isfinite(alpha) and math.isfinite(beta) and abs(alpha) <= limit and abs(beta) <= limit):
        work = torch.float64
        alpha = alpha if math.isfinite(alpha) else 0.0
        beta = beta if math.isfinite(beta) else 0.0
    out = torch.mul(x.to(work), alpha)
    out.add_(torch.mul(y.to(work), beta))  # two products, one commutative add: no FMA asymmetry
    return out.to(x.dtype)

"""The training path of the NB and ZINB likelihoods: summed over genes, forward and
gradient in one pass, from elementary vectorised operations.

``summed_count_log_likelihood`` equals ``log_nb``/``log_zinb`` of
``scprob.nn.distributions`` summed over genes (without ``log x!``) up to float rounding,
several times faster on a CPU: ``lgamma``, ``digamma``, ``where`` and ``softplus`` are not
vectorised there, so the densities are written with ``log``, ``exp`` and arithmetic only,
and the derivatives are computed beside the values so that autograd stores no
intermediates. Which implementation runs is a :class:`CountKernel`, chosen per fit by the
training plan: eager torch ops, or their ``torch.compile`` fusion. Measurements are in
``docs/likelihood-kernel.md``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scprob.nn.distributions import EPS

_HALF_LOG_TWO_PI = 0.9189385332046727


def _stirling(z: Tensor, with_digamma: bool) -> tuple[Tensor, Tensor | None]:
    """``log Γ(z)`` and, if asked, ``ψ(z)`` for ``0 < z < 6e12``, sharing their work.

    Both shift the argument by 3, ``log Γ(z) = log Γ(w) − log(z (z + 1) (z + 2))`` and
    ``ψ(z) = ψ(w) − (3z² + 6z + 2) / (z (z + 1) (z + 2))`` with ``w = z + 3``, and take the
    asymptotic series at ``w ≥ 3``: ``log Γ(w) ≈ (w − ½) log w − w + ½ log 2π + 1/(12w) −
    1/(360w³) + 1/(1260w⁵)`` and ``ψ(w) ≈ log w − 1/(2w) − 1/(12w²) + 1/(120w⁴) −
    1/(252w⁶)``. Absolute errors: below 3e-7 (``log Γ``) and 1e-7 (``ψ``) for any ``z > 0``,
    below 4e-8 and 7e-8 for ``z ≥ 1`` (the counts), i.e. under float32 rounding.
    ``z³`` must stay finite in float32, hence the upper bound.
    """
    w = z + 3.0
    r = w.reciprocal()
    r2 = r * r
    log_w = torch.log(w)
    shift = z * (z * w + 2.0)  # z (z + 1) (z + 2)
    lgamma = ((w - 0.5) * log_w - w + _HALF_LOG_TWO_PI
              + r * (1 / 12 + r2 * (-1 / 360 + r2 * (1 / 1260)))
              - torch.log(shift))
    if not with_digamma:
        return lgamma, None
    digamma = (log_w - r * (0.5 + r * (1 / 12 + r2 * (-1 / 120 + r2 * (1 / 252))))
               - (z * (3.0 * z + 6.0) + 2.0) / shift)
    return lgamma, digamma


def stirling_lgamma(z: Tensor) -> Tensor:
    """``log Γ(z)`` for ``0 < z < 6e12`` from elementary, vectorised operations (see
    :func:`_stirling`); ``torch.lgamma`` is exact but not vectorised on CPUs."""
    return _stirling(z, with_digamma=False)[0]


def stirling_digamma(z: Tensor) -> Tensor:
    """``ψ(z) = d log Γ(z)/dz`` for ``0 < z < 6e12`` (see :func:`_stirling`)."""
    digamma = _stirling(z, with_digamma=True)[1]
    assert digamma is not None
    return digamma


def _softplus(v: Tensor) -> Tensor:
    """``log(1 + e^v)``, stable for any ``v``: ``max(v, 0) + log(1 + e^{−|v|})``."""
    return v.clamp_min(0.0) + torch.log(1.0 + torch.exp(-v.abs()))


def _nb_terms(
    x: Tensor,
    mu: Tensor,
    theta: Tensor,
    lgamma_theta: Tensor,
    digamma_theta: Tensor,
    zi_logits: Tensor | None,
    eps: float,
    with_gradients: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Per-cell ``Σ_g log p(x_ng)`` without ``log x!`` and, if asked, the elementwise
    derivatives ``∂/∂mu``, ``∂/∂theta`` and ``∂/∂zi_logits``, each ``(n, n_genes)``.

    With ``T = θ + μ + ε`` the NB part without its Γ functions is

        P = θ (log(θ + ε) − log T) + x (log(μ + ε) − log T)     (= log NB(0) at x = 0)

    and ``log Γ(x + θ) − log Γ(θ)`` adds to it where ``x > 0`` (it vanishes at ``x = 0``).
    Zero inflation with logits ``π`` turns ``log p`` into ``P − softplus(π)`` for ``x > 0`` and
    ``logaddexp(π, P) − softplus(π) = P − softplus(π) + softplus(π − P)`` for ``x = 0``.
    Counts are non-negative integers, so ``min(x, 1)`` is the indicator of ``x > 0``.
    ``theta``, ``lgamma_theta = log Γ(θ)`` and ``digamma_theta = ψ(θ)`` are ``(1, n_genes)``
    or ``(n, n_genes)``; they come precomputed so that a per-gene ``Γ(θ)`` is evaluated
    once per gene, not once per matrix entry (``torch.compile`` would inline it).
    """
    nonzero = x.clamp_max(1.0)
    mu_eps = mu + eps
    total = mu_eps + theta
    log_total = torch.log(total)
    log_theta_eps = torch.log(theta + eps)
    x_theta = x + theta
    # Grouped as in log_nb: θ (log(θ + ε) − log T) keeps its precision for θ ≫ μ.
    log_nb_core = theta * (log_theta_eps - log_total) + x * (torch.log(mu_eps) - log_total)
    lgamma_x_theta, digamma_x_theta = _stirling(x_theta, with_gradients)
    log_p = log_nb_core + nonzero * (lgamma_x_theta - lgamma_theta)
    if zi_logits is not None:
        softplus_pi = _softplus(zi_logits)
        excess = zi_logits - log_nb_core  # π − log NB(0) where x = 0
        softplus_excess = _softplus(excess)
        zero = 1.0 - nonzero
        log_p = log_p - softplus_pi + zero * softplus_excess
    values = log_p.sum(dim=-1)
    if not with_gradients:
        return values, ()
    # ∂P/∂μ = x/(μ + ε) − (x + θ)/T,  ∂P/∂θ = log(θ + ε) + θ/(θ + ε) − log T − (x + θ)/T,
    # ∂/∂θ [log Γ(x + θ) − log Γ(θ)] = ψ(x + θ) − ψ(θ) where x > 0.
    x_theta_over_total = x_theta / total
    grad_mu = x / mu_eps - x_theta_over_total
    grad_theta = (log_theta_eps + theta / (theta + eps)) - log_total - x_theta_over_total
    grad_gamma = nonzero * (digamma_x_theta - digamma_theta)
    if zi_logits is None:
        return values, (grad_mu, grad_theta + grad_gamma)
    # Zero inflation scales ∂P by ∂log p/∂P = 1 − P(structural zero | x), which is
    # sigmoid(π − P) at x = 0 and 0 elsewhere; σ(v) = exp(v − softplus(v)) stays stable.
    structural_zero = zero * torch.exp(excess - softplus_excess)
    not_structural = 1.0 - structural_zero
    sigmoid_pi = torch.exp(zi_logits - softplus_pi)
    return values, (grad_mu * not_structural, grad_theta * not_structural + grad_gamma,
                    structural_zero - sigmoid_pi)


def _theta_terms(theta: Tensor, with_gradients: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``θ`` as ``(1, n_genes)`` or ``(n, n_genes)`` with ``log Γ(θ)`` and ``ψ(θ)``: the exact
    kernels for one row of per-gene values, the series for a matrix."""
    theta = theta if theta.dim() == 2 else theta.unsqueeze(0)
    if theta.shape[0] == 1:
        lgamma_theta = torch.lgamma(theta)
        digamma_theta = torch.digamma(theta) if with_gradients else None
    else:
        lgamma_theta, digamma_theta = _stirling(theta, with_gradients)
    return theta, lgamma_theta, lgamma_theta if digamma_theta is None else digamma_theta


def _nb_terms_from_logits(
    x: Tensor,
    scale_logits: Tensor,
    log_library: Tensor,
    theta: Tensor,
    lgamma_theta: Tensor,
    digamma_theta: Tensor,
    zi_logits: Tensor | None,
    eps: float,
    with_gradients: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """:func:`_nb_terms` at ``mu = exp(log_library) · softmax(scale_logits)``, with the
    derivative taken with respect to ``scale_logits``: for ``a = ∂log p/∂mu`` and
    ``ρ = softmax``, ``∂/∂s_k Σ_g log p_g = mu_k a_k − ρ_k Σ_g mu_g a_g``. Folding the softmax
    and the library in saves four passes over the matrix (softmax, its backward and two
    products) and lets the compiled kernel fuse them."""
    scale = torch.softmax(scale_logits, dim=-1)
    mu = torch.exp(log_library) * scale
    values, grads = _nb_terms(x, mu, theta, lgamma_theta, digamma_theta, zi_logits, eps,
                              with_gradients)
    if not with_gradients:
        return values, ()
    grad_mu, *others = grads
    weighted = mu * grad_mu
    return values, (weighted - scale * weighted.sum(dim=-1, keepdim=True), *others)


class _SummedCountLogLikelihood(torch.autograd.Function):
    """Autograd wrapper of the kernels: the forward keeps the elementwise derivatives, the
    backward only scales them by the incoming per-cell gradient. ``rate`` is ``mu`` when
    ``log_library`` is None, else the scale logits."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        rate: Tensor,
        log_library: Tensor | None,
        theta: Tensor,
        zi_logits: Tensor | None,
        eps: float,
        kernel: CountKernel,
    ) -> Tensor:
        values, grads = _evaluate(kernel, x, rate, log_library, theta, zi_logits, eps, True)
        ctx.save_for_backward(*grads)
        ctx.theta_shape = theta.shape
        return values

    @staticmethod
    def backward(ctx: Any, grad_values: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_rate, grad_theta, *grad_zi = ctx.saved_tensors
        per_cell = grad_values.unsqueeze(-1)
        if grad_theta.shape == ctx.theta_shape:
            theta_grad = grad_theta * per_cell
        else:  # θ broadcast over cells: Σ_n grad_n ∂log p_n/∂θ, one matrix-vector product
            theta_grad = (grad_values @ grad_theta).reshape(ctx.theta_shape)
        zi_grad = grad_zi[0] * per_cell if grad_zi else None
        return None, grad_rate * per_cell, None, theta_grad, zi_grad, None, None


_EAGER_FUNCTIONS: dict[str, Callable[..., tuple[Tensor, tuple[Tensor, ...]]]] = {
    "mean": _nb_terms, "logits": _nb_terms_from_logits,
}


@functools.cache
def _compiled_functions() -> dict[str, Callable[..., Any]]:
    """The ``torch.compile`` wrappers, made once per process so that every fit reuses what
    earlier fits compiled."""
    return {name: torch.compile(fn, dynamic=True) for name, fn in _EAGER_FUNCTIONS.items()}


class CountKernel:
    """Which implementation evaluates the likelihood: eager torch ops, or their
    ``torch.compile`` fusion (every term in a pass or two over the matrix; seconds of
    compilation at its first use in a process).

    The compiler needs a working C++ toolchain (Triton on a GPU), which a user may lack: at
    the first failure a compiled kernel warns and stays eager for the rest of the process.
    """

    _compilation_failed = False  # shared: a compiler that failed once fails again

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled

    @property
    def fused(self) -> bool:
        """Whether the compiled fusion runs (asked for, and the compiler has not failed)."""
        return self.compiled and not CountKernel._compilation_failed

    @property
    def name(self) -> str:
        """``"eager"``, ``"compiled"`` or ``"eager (compilation failed)"``."""
        if self.fused:
            return "compiled"
        return "eager (compilation failed)" if self.compiled else "eager"

    def __call__(self, variant: str, x: Tensor, *args: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
        # A single cell runs eagerly: the compiler specialises sizes 0 and 1, so a one-cell
        # batch (a validation set's last) would cost a recompilation for no speed.
        if self.fused and x.shape[0] > 1:
            try:
                # Detached inputs keep one compiled graph per variant: the compiler guards
                # on requires_grad, which differs between training, validation and a query
                # model's frozen parameters, while the kernel never needs autograd inside.
                detached = [a.detach() if isinstance(a, Tensor) else a for a in args]
                return _compiled_functions()[variant](x, *detached)
            except Exception as error:  # any compiler failure means: stay eager
                CountKernel._compilation_failed = True
                first_line = str(error).splitlines()[0] if str(error) else ""
                warnings.warn(
                    f"torch.compile of the count likelihood failed ({type(error).__name__}: "
                    f"{first_line}); continuing with the eager kernel.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return _EAGER_FUNCTIONS[variant](x, *args)


EAGER = CountKernel(compiled=False)
COMPILED = CountKernel(compiled=True)


def _check_arguments(
    x: Tensor, rate: Tensor, rate_name: str, theta: Tensor, zi_logits: Tensor | None,
    log_library: Tensor | None,
) -> None:
    if rate.shape != x.shape or rate.dim() != 2:
        raise ValueError(
            f"x and {rate_name} must both be (n_cells, n_genes) matrices, got "
            f"{tuple(x.shape)} and {tuple(rate.shape)}."
        )
    if log_library is not None:
        if log_library.shape != (x.shape[0], 1):
            raise ValueError(
                f"log_library must be (n_cells, 1) = {(x.shape[0], 1)}, got "
                f"{tuple(log_library.shape)}."
            )
        if log_library.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "log_library must not require a gradient here (it is the observed library; "
                "detach it, or pass mu for a modelled library)."
            )
    if zi_logits is not None and zi_logits.shape != x.shape:
        raise ValueError(
            f"zi_logits must have the shape of x {tuple(x.shape)}, got "
            f"{tuple(zi_logits.shape)}."
        )
    if theta.shape not in (x.shape[1:], x.shape, (1, x.shape[1])):
        raise ValueError(
            f"theta must be (n_genes,) or (n_cells, n_genes) for x of shape "
            f"{tuple(x.shape)}, got {tuple(theta.shape)}."
        )


def summed_count_log_likelihood(
    x: Tensor,
    mu: Tensor | None,
    theta: Tensor,
    zi_logits: Tensor | None = None,
    *,
    scale_logits: Tensor | None = None,
    log_library: Tensor | None = None,
    eps: float = EPS,
    kernel: CountKernel = EAGER,
) -> Tensor:
    """Per-cell NB (or, with ``zi_logits``, ZINB) log-likelihood summed over genes, without
    the constant ``log x!``: ``(n_cells,)``.

    ``x`` ``(n_cells, n_genes)`` non-negative integer counts (no gradient), ``mu`` and
    ``zi_logits`` of that shape, ``theta`` ``(n_genes,)`` or ``(n_cells, n_genes)``. Instead
    of ``mu`` (pass ``None``), a decoder can give ``scale_logits`` ``(n_cells, n_genes)`` and
    the observed ``log_library`` ``(n_cells, 1)``: ``mu = exp(log_library) ·
    softmax(scale_logits)``, and the gradient flows to the logits directly.
    """
    if (mu is None) == (scale_logits is None) or (scale_logits is None) != (log_library is None):
        raise ValueError(
            "pass either mu, or scale_logits together with log_library (not both)."
        )
    rate = mu if mu is not None else scale_logits
    assert rate is not None
    _check_arguments(x, rate, "mu" if mu is not None else "scale_logits", theta, zi_logits,
                     log_library)
    needs_gradient = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (rate, theta, zi_logits)
    )
    if needs_gradient:
        return _SummedCountLogLikelihood.apply(x, rate, log_library, theta, zi_logits, eps,
                                               kernel)
    return _evaluate(kernel, x, rate, log_library, theta, zi_logits, eps, False)[0]


# Matrix entries per block of rows for the eager kernels on a CPU. On one thread, blocks
# small enough that the kernel's ~100 passes stay in the core's L2 cache instead of
# streaming minibatch-sized temporaries through memory. On several, every op is an OpenMP
# region whose sleeping threads are woken each time, so each thread's share of a pass must
# outweigh the wake-up: twice as many entries per thread. A fused (compiled) kernel, or a
# GPU, takes the whole matrix (docs/likelihood-kernel.md).
_EAGER_BLOCK_ENTRIES = 1 << 16
_EAGER_BLOCK_ENTRIES_PER_THREAD = 1 << 17


def _eager_block_entries() -> int:
    threads = torch.get_num_threads()
    return _EAGER_BLOCK_ENTRIES if threads == 1 else _EAGER_BLOCK_ENTRIES_PER_THREAD * threads


def _evaluate(
    count_kernel: CountKernel,
    x: Tensor,
    rate: Tensor,
    log_library: Tensor | None,
    theta: Tensor,
    zi_logits: Tensor | None,
    eps: float,
    with_gradients: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Values ``(n,)`` and, if asked, derivatives of the selected kernel, by row blocks
    where that helps (eager kernels on a CPU)."""
    theta, lgamma_theta, digamma_theta = _theta_terms(theta, with_gradients)
    name = "mean" if log_library is None else "logits"

    def kernel(rows: slice) -> tuple[Tensor, tuple[Tensor, ...]]:
        def part(t: Tensor) -> Tensor:  # per-cell rows; a per-gene row is shared
            return t[rows] if t.shape[0] == x.shape[0] else t

        library = () if log_library is None else (log_library[rows],)
        return count_kernel(
            name,
            x[rows], rate[rows], *library, part(theta), part(lgamma_theta),
            part(digamma_theta), None if zi_logits is None else zi_logits[rows], eps,
            with_gradients,
        )

    n_cells, n_genes = x.shape
    block = max(1, _eager_block_entries() // max(n_genes, 1))
    if x.device.type != "cpu" or count_kernel.fused or n_cells <= 2 * block:
        return kernel(slice(None))
    values = x.new_empty(n_cells)
    grads: list[Tensor] = []
    for start in range(0, n_cells, block):
        rows = slice(start, start + block)
        block_values, block_grads = kernel(rows)
        values[rows] = block_values
        if not grads:  # every derivative is elementwise: (rows, n_genes)
            grads = [g.new_empty((n_cells, *g.shape[1:])) for g in block_grads]
        for full, part_grad in zip(grads, block_grads, strict=True):
            full[rows] = part_grad
    return values, tuple(grads)

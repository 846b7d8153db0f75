"""Analytic gradient of the Laplace deviance of a GLMM with a canonical link.

f(theta, beta) = g(u_hat) + log|A|, g(u) = -2 log p(y | eta) + ||u||^2,
A = Lambda'Z'WZ Lambda + I, eta = X beta + offset + Z Lambda u, u_hat = argmin g.

By the envelope theorem g contributes only its partial derivatives; log|A| depends on
the parameters directly (through Lambda) and through eta (the weights), eta in turn
through u_hat(theta, beta), whose derivative follows from dg/du = 0.  With, per row,
r = w_prior (y - mu) (the score), w the weights, w' = dw/deta, z_i the row of Z Lambda,
h_i = z_i' A^-1 z_i, v = w' h, s = Lambda'Z'v and a = A^-1 s (one extra solve):

    df/dbeta = X'c,   c = -2 r + v - w (Z Lambda a)
    df/dT_t  = sum_i x_ti [c_i u_t(i) + r_i a_t(i) + 2 w_i (Q_i z_i)_t]'

for each term's factor T_t (x_ti the row of the term's model matrix, u_t(i) and a_t(i)
the values of its level, Q_i the entries of A^-1 at the row's positions); the theta
gradient is the lower triangle of df/dT_t.  For a canonical link the observed and Fisher
weights agree, which the implicit derivative of u_hat needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from glmx.mixed.blocked import Structure
from glmx.mixed.pirls import PirlsResult, RowModel
from glmx.mixed.reterms import ReTerms, lower_tri

Array = NDArray[np.float64]


def _per_row(structure: Structure, vec: Array, i: int) -> Array:
    """Values of vector ``vec`` (length q) at each row's level of term i: (n, k_i)."""
    rt = structure.reterms
    t = rt.terms[i]
    block = vec[rt.u_offsets[i] : rt.u_offsets[i + 1]].reshape(t.n_levels, t.k)
    return structure.expand(block) if i == 0 else block[t.codes]


def _row_positions(structure: Structure) -> NDArray[np.intp]:
    rt = structure.reterms
    cols = [
        rt.u_offsets[i] + t.codes[:, None] * t.k + np.arange(t.k) for i, t in enumerate(rt.terms)
    ]
    return np.hstack(cols).astype(np.intp)


def laplace_gradient(
    structure: Structure,
    rows: RowModel,
    X: Array,
    theta: Array,
    modes: PirlsResult,
    joint: bool = False,
) -> Array:
    """Gradient of the Laplace deviance with respect to (theta, beta); with ``joint``
    (lme4's nAGQ = 0 deviance, beta at its joint mode with u) with respect to theta."""
    s, rt, f = structure, structure.reterms, modes.factor
    mu, pw = modes.mu, rows.pw
    if rows.family.name == "binomial":
        var = mu * (1.0 - mu)
        dvar = 1.0 - 2.0 * mu  # V'(mu)
    else:
        var, dvar = mu, np.ones_like(mu)
    w = pw * var
    w_prime = pw * dvar * var  # dw/deta = w_prior V'(mu) mu'(eta), mu' = V for canonical
    r = pw * (rows.y - mu)
    Ts = rt.Ts(theta)
    Zl = np.hstack([t.X @ T for t, T in zip(rt.terms, Ts)])  # rows of Z Lambda, (n, K)
    if len(rt.terms) == 1:
        Q = s.expand(f.inv11)
    else:
        pos = _row_positions(s)
        Q = f.inverse_entries(pos[:, :, None], pos[:, None, :])
    QZ = np.einsum("nab,nb->na", Q, Zl)
    h = np.einsum("na,na->n", Zl, QZ)  # z_i' A^-1 z_i
    v = w_prime * h
    # s = d log|A| / d(u, beta) through eta; a = (d^2 g / d(u, beta)^2 / 2)^-1 s
    svec = [_level_sums(s, v[:, None] * Zl[:, _cols(rt, i)], i) for i in range(len(rt.terms))]
    if joint:
        svec.append(X.T @ v)
    a = f.solve_system(np.concatenate(svec))
    eta_a = s.Zt_u(theta, a[: rt.q]) + (X @ a[rt.q :] if joint else 0.0)
    c = -2.0 * r + v - w * eta_a
    grad_theta = []
    for i, t in enumerate(rt.terms):
        Y = (
            c[:, None] * _per_row(s, modes.u, i)
            + r[:, None] * _per_row(s, a, i)
            + 2.0 * w[:, None] * QZ[:, _cols(rt, i)]
        )
        G = t.X.T @ Y
        rows_, cols_ = lower_tri(t.k)
        grad_theta.append(G[rows_, cols_])
    return np.concatenate(grad_theta if joint else [*grad_theta, X.T @ c])


def _cols(rt: ReTerms, i: int) -> slice:
    """Term i's columns among the K columns of a row of Z Lambda."""
    ks = [t.k for t in rt.terms]
    start = sum(ks[:i])
    return slice(start, start + ks[i])


def _level_sums(s: Structure, M: Array, i: int) -> Array:
    """Sums of the rows of M (n, k_i) by level of term i, flattened (m_i k_i)."""
    t = s.reterms.terms[i]
    if i == 0:
        return s.level_sums(M).ravel()
    sums = [np.bincount(t.codes, M[:, c], minlength=t.n_levels) for c in range(t.k)]
    return np.column_stack(sums).ravel().astype(np.float64)

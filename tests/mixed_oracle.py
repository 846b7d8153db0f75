"""A mixed-model oracle that shares nothing with glmx: dense algebra and scipy.optimize.

Notation as lme4 (Bates et al. 2015, "Fitting linear mixed-effects models using lme4"):
``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``, ``Lambda`` block diagonal with one
``kron(I_levels, T)`` block per random-effect term, ``T`` lower triangular (its diagonal
>= 0), and ``theta`` the lower triangle of each ``T`` column by column, the terms in lme4's
order (by number of levels, decreasing), so a ``theta`` here
is ``getME(fit, "theta")`` and glmx's ``fit.theta`` (see ``lme4_order`` for ties).

LMM (gaussian, identity): ``y ~ N(X beta, sigma^2 V)`` with ``V = I + Z Lambda Lambda' Z'``.
Profiled over ``beta`` and ``sigma`` (``r2 = min_beta (y - X beta)' V^-1 (y - X beta)``):

* ML:   ``-2 loglik = log|V| + n (1 + log(2 pi r2 / n))``
* REML: ``-2 loglik_R = log|V| + log|X' V^-1 X| + (n - p) (1 + log(2 pi r2 / (n - p)))``,
  lme4's REML criterion (``logLik`` of a REML fit is minus half of it).

``LMM.deviance_dense`` computes these from the n x n matrix ``V`` itself (the definition);
``LMM.deviance`` from q x q cross-products (``|V| = |A|``, ``A = Lambda' Z'Z Lambda + I``,
Woodbury for ``V^-1``) with its analytic gradient in ``theta``; the tests check that the two
agree and that the gradient matches finite differences.

GLMM (binomial with the logit link, Poisson with the log link), lme4's Laplace
approximation (``glmer``, ``nAGQ = 1``): for a given ``(theta, beta)`` the conditional mode
``u`` minimizes ``g(u) = -2 sum log p(y | mu) + |u|^2`` (``eta = X beta + Z Lambda u``, found
by Newton's method with step halving), and

    -2 loglik = -2 sum log p(y | mu(u)) + |u|^2 + log|Lambda' Z' W Z Lambda + I|

with ``W = d mu / d eta`` (the canonical links' Fisher weights, ``mu`` and ``mu (1 - mu)``
times the trials) at the mode, and ``log p`` the full log density (``dpois``, ``dbinom``
with their constants: lme4's ``aic()`` term). It is maximized over ``theta`` and ``beta``.

Both are maximized by L-BFGS-B (bounds: each diagonal element of ``T`` >= 0) from several
starts: lme4's default (``T = I``), variances near 0, correlations near +1 and -1, random
and caller-given starts; the best value any start reaches is the oracle's maximum.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class Term:
    """One random-effect term ``(cols | group)``: a level code per row and its columns."""

    name: str
    codes: Array  # int, 0 .. n_levels - 1
    cols: Array  # n x k

    @property
    def n_levels(self) -> int:
        return int(self.codes.max()) + 1

    @property
    def k(self) -> int:
        return int(self.cols.shape[1])

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    def z(self) -> Array:
        """Dense Z of the term: column ``level * k + j`` is ``cols[:, j]`` on that level."""
        n, k = self.cols.shape
        out = np.zeros((n, self.n_levels * k))
        for j in range(k):
            out[np.arange(n), self.codes * k + j] = self.cols[:, j]
        return out


def term(name: str, group: Any, *cols: Any) -> Term:
    """A term from a grouping column (any labels) and its columns (``1.0`` is an intercept)."""
    codes = pd.factorize(pd.Series(list(group)), sort=True)[0].astype(np.intp)
    n = codes.size
    mat = np.column_stack([np.broadcast_to(np.asarray(c, float), (n,)) for c in cols])
    return Term(name, codes, mat)


def from_formula(formula: str, data: pd.DataFrame) -> tuple[Array, Array, list[Term]]:
    """y, X and the terms of a formula in the small syntax the tests use (its own parser,
    nothing from glmx): numeric fixed columns after an intercept, and random-effect terms
    ``(1 | g)``, ``(1 + x | g)``, ``(x | g)``, ``(0 + x | g)``, ``(... || g)``, ``(1 | a/b)``,
    ``(1 | a:b)``.
    """
    lhs, rhs = (side.strip() for side in formula.split("~"))
    bars = re.findall(r"\(([^()|]+)(\|\|?)([^()]+)\)", rhs)
    fixed = [c.strip() for c in re.sub(r"\([^()]*\)", "", rhs).split("+")]
    n = len(data)
    X = np.column_stack(
        [np.ones(n)] + [data[c].to_numpy(float) for c in fixed if c not in ("", "1")]
    )
    terms = []
    for cols, bar, grp in bars:
        parts = [c.strip() for c in cols.split("+")]
        names = ([] if "0" in parts else ["1"]) + [c for c in parts if c not in ("0", "1")]
        values = [np.ones(n) if c == "1" else data[c].to_numpy(float) for c in names]
        grp = grp.strip()
        if "/" in grp:
            outer, inner = (g.strip() for g in grp.split("/"))
            groups = [outer, f"{outer}:{inner}"]
        else:
            groups = [grp]
        for g in groups:
            labels = data[g.split(":")[0].strip()].astype(str)
            for part in g.split(":")[1:]:
                labels = labels + ":" + data[part.strip()].astype(str)
            if bar == "||":
                terms += [term(g, labels, v) for v in values]
            else:
                terms.append(term(g, labels, *values))
    return data[lhs].to_numpy(float), X, terms


def lme4_order(terms: Sequence[Term]) -> list[Term]:
    """lme4's order of terms (``mkReTrms``): unless the numbers of levels already decrease,
    ``rev(order(nl))``, i.e. by number of levels, decreasing, and ties in *reverse* order
    (``(1 + x || a) + (1 | b)`` with more levels of b: b, then x | a, then 1 | a)."""
    nl = np.array([t.n_levels for t in terms])
    if not np.any(np.diff(nl) > 0):
        return list(terms)
    return [terms[i] for i in np.argsort(nl, kind="stable")[::-1]]


class _Structure:
    """Lambda(theta) for a list of terms, its bounds, and d Lambda / d theta as an index map."""

    def __init__(self, terms: Sequence[Term]):
        self.terms = lme4_order(terms)
        self.Z = np.concatenate([t.z() for t in self.terms], axis=1)
        self.q = self.Z.shape[1]
        lower, tri, offsets = [], [], []
        off = 0
        for t in self.terms:
            r, c = np.tril_indices(t.k)
            order = np.lexsort((r, c))  # column by column, as lme4
            r, c = r[order], c[order]
            tri.append((r, c))
            lower += [0.0 if i == j else -np.inf for i, j in zip(r, c)]
            offsets.append(off)
            off += t.n_levels * t.k
        self.lower = np.array(lower)
        self.n_theta = self.lower.size
        self._tri = tri
        self._offsets = offsets

    def blocks(self, theta: Array) -> list[Array]:
        out, i = [], 0
        for t, (r, c) in zip(self.terms, self._tri):
            T = np.zeros((t.k, t.k))
            T[r, c] = theta[i : i + r.size]
            out.append(T)
            i += r.size
        return out

    def Lambda(self, theta: Array) -> Array:
        """``Lambda(theta)``: block diagonal, ``kron(I_levels, T)`` per term."""
        theta = np.asarray(theta, float)
        if not hasattr(self, "_dLambda"):  # Lambda is linear in theta: sum theta_i Lambda(e_i)
            self._dLambda = np.stack([self._Lambda(e) for e in np.eye(self.n_theta)])
        return np.tensordot(theta, self._dLambda, axes=1)

    def _Lambda(self, theta: Array) -> Array:
        return linalg.block_diag(
            *[np.kron(np.eye(t.n_levels), T) for t, T in zip(self.terms, self.blocks(theta))]
        )

    def contract(self, D: Array) -> Array:
        """``sum_ij (d Lambda / d theta_m)_ij D_ij`` for every m."""
        out = []
        for t, (r, c), off in zip(self.terms, self._tri, self._offsets):
            m, k = t.n_levels, t.k
            blk = D[off : off + m * k, off : off + m * k].reshape(m, k, m, k)
            G = np.einsum("lilj->ij", blk)
            out.append(G[r, c])
        return np.concatenate(out)

    def default_theta(self) -> Array:
        return np.where(self.lower == 0.0, 1.0, 0.0)

    def starts(self, rng: np.random.Generator | None, n_random: int) -> list[Array]:
        """lme4's default; variances near 0; correlations near +1 and -1; random."""
        out = [self.default_theta(), np.where(self.lower == 0.0, 0.01, 0.0)]
        if np.any(self.lower != 0.0):  # a correlated term
            for rho in (0.99, -0.99):
                th = []
                for t in self.terms:
                    # equicorrelation rho (rho / (k - 1) when negative, to stay definite)
                    r_k = rho if rho > 0 else rho / max(t.k - 1, 1)
                    C = (1 - r_k) * np.eye(t.k) + r_k
                    T = np.linalg.cholesky(C)
                    r, c = np.tril_indices(t.k)
                    o = np.lexsort((r, c))
                    th.append(T[r[o], c[o]])
                out.append(np.concatenate(th))
        for _ in range(n_random if rng is not None else 0):
            assert rng is not None
            th = rng.normal(size=self.n_theta)
            out.append(np.where(self.lower == 0.0, np.abs(th) * 1.5, th))
        return out


def _minimize(fun, x0: Array, bounds: list, ftol: float, gtol: float) -> tuple[float, Array]:
    r = optimize.minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": ftol, "gtol": gtol, "maxiter": 2000},
    )
    return float(r.fun), np.asarray(r.x)


def _kick(
    fun, dev: float, x: Array, lower: Array, bounds: list, **tol: float
) -> tuple[float, Array]:
    """Restart from the boundary: lme4's parametrization has a zero derivative in the last
    diagonal element of ``T`` at 0 (the covariance depends on its square), so a point there
    can be a saddle the optimizer cannot leave.  Each diagonal element at 0 is set to 0.1,
    0.5 and 1.5 in turn and the optimizer restarted; the best point is kept, until no
    restart improves it."""
    for _ in range(6):
        for i in np.flatnonzero((lower == 0.0) & (x[: lower.size] <= 1e-8)):
            better = False
            for v in (0.1, 0.5, 1.5):
                x1 = x.copy()
                x1[i] = v
                dev1, x1 = _minimize(fun, x1, bounds, **tol)
                if dev1 < dev - 1e-10:
                    dev, x, better = dev1, x1, True
                    break
            if better:
                break
        else:
            return dev, x
    return dev, x


@dataclasses.dataclass
class Optimum:
    loglik: float
    theta: Array
    beta: Array | None
    starts: list[tuple[Array, float]]  # each start and the loglik it reached


class LMM(_Structure):
    """A linear mixed model's ML or REML log-likelihood, profiled over beta and sigma."""

    def __init__(self, y: Array, X: Array, terms: Sequence[Term], reml: bool = False):
        super().__init__(terms)
        self.y = np.asarray(y, float)
        self.X = np.asarray(X, float)
        self.n, self.p = self.X.shape
        self.reml = reml
        Z, X, y = self.Z, self.X, self.y
        self.ZtZ, self.ZtX, self.Zty = Z.T @ Z, Z.T @ X, Z.T @ y
        Xy = np.column_stack([X, y])
        self.G0 = Xy.T @ Xy  # [X y]' [X y]

    # ------------------------------------------------------------------ the definition
    def deviance_dense(self, theta: Array) -> float:
        """-2 loglik from the n x n ``V = I + Z Lambda Lambda' Z'`` (slow; for checks)."""
        ZL = self.Z @ self._Lambda(np.asarray(theta, float))  # from the blocks themselves
        V = np.eye(self.n) + ZL @ ZL.T
        Vi = np.linalg.inv(V)
        S = self.X.T @ Vi @ self.X
        beta = np.linalg.solve(S, self.X.T @ Vi @ self.y)
        e = self.y - self.X @ beta
        r2 = float(e @ Vi @ e)
        logdet_v = np.linalg.slogdet(V)[1]
        if not self.reml:
            return float(logdet_v + self.n * (1 + np.log(2 * np.pi * r2 / self.n)))
        df = self.n - self.p
        return float(logdet_v + np.linalg.slogdet(S)[1] + df * (1 + np.log(2 * np.pi * r2 / df)))

    # ------------------------------------------------------------------ fast, q x q
    def deviance(self, theta: Array, gradient: bool = False) -> float | tuple[float, Array]:
        """-2 loglik (ML) or the REML criterion, and optionally its gradient in theta."""
        theta = np.asarray(theta, float)
        L = self.Lambda(theta)
        A = L.T @ self.ZtZ @ L + np.eye(self.q)
        try:
            C = linalg.cholesky(A, lower=True)
        except linalg.LinAlgError:
            return (np.inf, np.zeros(self.n_theta)) if gradient else np.inf
        P = np.column_stack([self.ZtX, self.Zty])
        U = linalg.solve_triangular(C, L.T @ P, lower=True)
        G = self.G0 - U.T @ U  # [X y]' V^-1 [X y]
        p = self.p
        S = G[:p, :p]  # X' V^-1 X
        Sc = linalg.cholesky(S, lower=True)
        beta = linalg.cho_solve((Sc, True), G[:p, p])
        r2 = float(G[p, p] - G[:p, p] @ beta)
        if not r2 > 0:
            return (np.inf, np.zeros(self.n_theta)) if gradient else np.inf
        ldA = 2 * float(np.sum(np.log(np.diag(C))))
        df = self.n - p if self.reml else self.n
        dev = ldA + df * (1 + np.log(2 * np.pi * r2 / df))
        if self.reml:
            dev += 2 * float(np.sum(np.log(np.diag(Sc))))
        if not gradient:
            return float(dev)
        Ai = linalg.cho_solve((C, True), np.eye(self.q))
        B = self.ZtZ @ L @ Ai  # d log|A| = 2 sum dL * B
        M = Ai @ L.T  # Z' V^-1 m = Z'm - ZtZ L A^-1 L' Z'm
        w = (self.Zty - self.ZtX @ beta) - self.ZtZ @ (L @ (M @ (self.Zty - self.ZtX @ beta)))
        D = 2 * B - (df / r2) * 2 * np.outer(w, L.T @ w)
        if self.reml:
            W = self.ZtX - self.ZtZ @ (L @ (M @ self.ZtX))
            D -= 2 * (W @ linalg.cho_solve((Sc, True), W.T)) @ L
        return float(dev), self.contract(D)

    def loglik(self, theta: Array) -> float:
        return -0.5 * float(self.deviance(theta))  # type: ignore[arg-type]

    def maximize(
        self,
        extra_starts: Sequence[Array] = (),
        rng: np.random.Generator | None = None,
        n_random: int = 0,
        standard_starts: bool = True,
    ) -> Optimum:
        starts = list(self.starts(rng, n_random)) if standard_starts else []
        starts += [np.maximum(np.asarray(s, float), self.lower) for s in extra_starts]
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower]
        best_dev, best_theta, tried = np.inf, starts[0], []

        def fun(th: Array) -> tuple[float, Array]:
            return self.deviance(th, gradient=True)  # type: ignore[return-value]

        tol = {"ftol": 1e-15, "gtol": 1e-10}
        for s in starts:
            dev, th = _minimize(fun, s, bounds, **tol)
            tried.append((np.asarray(s), -0.5 * dev))
            if dev < best_dev:
                best_dev, best_theta = dev, th
        best_dev, best_theta = _kick(fun, best_dev, best_theta, self.lower, bounds, **tol)
        return Optimum(-0.5 * best_dev, best_theta, None, tried)


# ---------------------------------------------------------------------- GLMMs
def _logdens(family: str, y: Array, mu: Array, trials: Array) -> Array:
    if family == "poisson":
        return special.xlogy(y, mu) - mu - special.gammaln(y + 1)
    # binomial, y successes out of trials
    return (
        special.gammaln(trials + 1)
        - special.gammaln(y + 1)
        - special.gammaln(trials - y + 1)
        + special.xlogy(y, mu)
        + special.xlog1py(trials - y, -mu)
    )


def _mean(family: str, eta: Array) -> tuple[Array, Array]:
    """mu and d mu / d eta of the canonical link."""
    if family == "poisson":
        mu = np.exp(eta)
        return mu, mu
    mu = special.expit(eta)
    return mu, mu * (1 - mu)


class GLMM(_Structure):
    """The Laplace approximation to a binomial (logit) or Poisson (log) GLMM's likelihood.

    ``y`` is the count of successes (binomial, with ``trials``, 1 by default) or events.
    """

    def __init__(
        self,
        y: Array,
        X: Array,
        terms: Sequence[Term],
        family: str,
        trials: Array | None = None,
    ):
        super().__init__(terms)
        if family not in ("binomial", "poisson"):
            raise ValueError(family)
        self.family = family
        self.y = np.asarray(y, float)
        self.X = np.asarray(X, float)
        self.n, self.p = self.X.shape
        self.trials = np.ones(self.n) if trials is None else np.asarray(trials, float)
        self._u = np.zeros(self.q)  # warm start of the conditional modes
        # Lambda is linear in theta: Z Lambda(theta) = sum_i theta_i Z Lambda(e_i)
        self._dZL = np.stack([self.Z @ self.Lambda(e) for e in np.eye(self.n_theta)])

    def ZL(self, theta: Array) -> Array:
        return np.tensordot(np.asarray(theta, float), self._dZL, axes=1)

    def _g(self, eta: Array, u: Array) -> float:
        mu = _mean(self.family, eta)[0]
        return float(-2 * np.sum(_logdens(self.family, self.y, mu, self.trials)) + u @ u)

    def mode(self, theta: Array, beta: Array) -> tuple[Array, float, Array]:
        """The conditional mode u, g(u), and ZLambda (Newton's method, step halving)."""
        ZL = self.ZL(theta)
        off = self.X @ np.asarray(beta, float)
        u = self._u.copy()
        g = self._g(off + ZL @ u, u)
        if not np.isfinite(g):
            u = np.zeros(self.q)
            g = self._g(off, u)
        for _ in range(200):
            mu, d = _mean(self.family, off + ZL @ u)
            score = ZL.T @ (self.y - self.trials * mu) - u  # -1/2 dg/du
            H = (ZL.T * (self.trials * d)) @ ZL + np.eye(self.q)
            step = linalg.cho_solve(linalg.cho_factor(H, lower=True), score)
            for _ in range(60):
                g_new = self._g(off + ZL @ (u + step), u + step)
                if g_new <= g + 1e-13 * abs(g):
                    break
                step = step / 2
            else:
                break  # no step decreases g: u is the mode to rounding
            u, g = u + step, g_new
            if np.max(np.abs(step)) < 1e-10:
                break
        self._u = u
        return u, g, ZL

    def deviance(
        self, theta: Array, beta: Array, gradient: bool = False
    ) -> float | tuple[float, Array]:
        """lme4's Laplace deviance, -2 loglik, at (theta, beta); optionally its gradient.

        The gradient: ``dF = dg (u held at the mode: its own derivative is 0 there) +
        tr(H^-1 dH)``, where ``H`` moves with ``Z Lambda`` and, through the weights, with
        ``eta``, whose derivative includes the mode's ``du = H^-1 (dZL' r - ZL' W dZL u -
        ZL' W X dbeta)`` (the implicit function theorem on ``ZL' r = u``, ``r = y - m mu``).
        """
        theta, beta = np.asarray(theta, float), np.asarray(beta, float)
        with np.errstate(all="ignore"):  # far from the optimum exp() may overflow: dev = inf
            return self._deviance(theta, beta, gradient)

    def _deviance(self, theta: Array, beta: Array, gradient: bool) -> float | tuple[float, Array]:
        u, g, ZL = self.mode(theta, beta)
        eta = self.X @ beta + ZL @ u
        mu, d = _mean(self.family, eta)
        D = self.trials * d
        H = (ZL.T * D) @ ZL + np.eye(self.q)
        if not np.all(np.isfinite(H)):
            return (np.inf, np.zeros(self.n_theta + self.p)) if gradient else np.inf
        Hc = linalg.cholesky(H, lower=True)
        dev = float(g + 2 * np.sum(np.log(np.diag(Hc))))
        if not gradient:
            return dev
        d2 = self.trials * (d if self.family == "poisson" else d * (1 - 2 * mu))  # D' (eta)
        Hi = linalg.cho_solve((Hc, True), np.eye(self.q))
        h = np.einsum("ij,jk,ik->i", ZL, Hi, ZL)  # diag(ZL H^-1 ZL')
        hd = h * d2
        r = self.y - self.trials * mu
        DZLHi = (ZL * D[:, None]) @ Hi
        grad = np.empty(self.n_theta + self.p)
        # beta
        du = -Hi @ ((ZL.T * D) @ self.X)
        grad[self.n_theta :] = -2 * self.X.T @ r + hd @ (self.X + ZL @ du)
        # theta: d ZL / d theta_i = Z Lambda(e_i)
        for i, dZL in enumerate(self._dZL):
            dZLu = dZL @ u
            du_i = Hi @ (dZL.T @ r - ZL.T @ (D * dZLu))
            grad[i] = -2 * r @ dZLu + 2 * np.sum(dZL * DZLHi) + hd @ (dZLu + ZL @ du_i)
        return dev, grad

    def loglik(self, theta: Array, beta: Array) -> float:
        return -0.5 * float(self.deviance(theta, beta))  # type: ignore[arg-type]

    def glm_beta(self) -> Array:
        """beta of the GLM without random effects (IRLS), a start for the optimizer."""
        beta = np.zeros(self.p)
        if self.family == "poisson":
            beta[0] = np.log(max(self.y.mean(), 0.1)) if np.allclose(self.X[:, 0], 1) else 0.0
        for _ in range(50):
            eta = self.X @ beta
            mu, d = _mean(self.family, eta)
            w = self.trials * d
            z = eta + (self.y - self.trials * mu) / np.maximum(w, 1e-12)
            new = np.linalg.lstsq(self.X * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)[0]
            if np.max(np.abs(new - beta)) < 1e-10:
                return new
            beta = new
        return beta

    def maximize(
        self,
        extra_starts: Sequence[tuple[Array, Array]] = (),
        rng: np.random.Generator | None = None,
        n_random: int = 0,
        standard_starts: bool = True,
    ) -> Optimum:
        k = self.n_theta
        starts: list[tuple[Array, Array]] = []
        if standard_starts:
            b0 = self.glm_beta()
            starts += [(th, b0) for th in self.starts(rng, n_random)]
        starts += [(np.maximum(np.asarray(t, float), self.lower), b) for t, b in extra_starts]
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower] + [
            (None, None)
        ] * self.p
        best = (np.inf, np.concatenate(starts[0]))
        tried = []

        def fun(par: Array) -> tuple[float, Array]:
            try:
                return self.deviance(par[:k], par[k:], gradient=True)  # type: ignore[return-value]
            except (linalg.LinAlgError, FloatingPointError):
                return 1e300, np.zeros(par.size)

        tol = {"ftol": 1e-15, "gtol": 1e-9}
        for th, b in starts:
            self._u = np.zeros(self.q)
            x0 = np.concatenate([th, np.asarray(b, float)])
            dev, x = _minimize(fun, x0, bounds, **tol)
            tried.append((x0, -0.5 * dev))
            if dev < best[0]:
                best = (dev, x)
        best = _kick(fun, best[0], best[1], self.lower, bounds, **tol)
        return Optimum(-0.5 * best[0], best[1][:k], best[1][k:], tried)

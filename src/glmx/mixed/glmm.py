"""The GLMM objective as a function of (theta, beta), and its two-stage optimization.

As lme4's ``glmer``: stage one (nAGQ = 0) optimizes theta with beta and u found together
by PIRLS; stage two starts there and optimizes (theta, beta) with PIRLS over u alone,
the deviance being the Laplace approximation (nagq = 1) or adaptive Gauss-Hermite
quadrature (nagq > 1, one scalar term).  Conditional modes are warm-started from the
previous evaluation, so an evaluation near the last one costs two or three PIRLS steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.mixed.blocked import Structure
from glmx.mixed.gradient import laplace_gradient
from glmx.mixed.optimize import OptimizeResult, Progress, minimize_bounded, minimize_scaled
from glmx.mixed.pirls import PirlsResult, RowModel, pirls
from glmx.mixed.quadrature import agq_deviance

Array = NDArray[np.float64]


@dataclass(frozen=True)
class GlmmOptimum:
    theta: Array
    beta: Array
    modes: PirlsResult  # PIRLS at the optimum
    deviance: float  # -2 log-likelihood (Laplace or AGQ) at the optimum
    stage0: OptimizeResult
    stage1: OptimizeResult


class GeneralizedLinearMixedModel:
    """The deviance function of a GLMM whose rows are sorted by term 1's levels."""

    def __init__(
        self,
        structure: Structure,
        X: Array,
        rows: RowModel,
        offset: Array,
        nagq: int = 1,
    ) -> None:
        self.structure = structure
        self.X = X
        self.rows = rows
        self.offset = offset
        self.nagq = nagq
        self.n_theta = structure.reterms.n_theta
        self.p = X.shape[1]
        self._u = np.zeros(structure.reterms.q)  # warm start of the modes
        self._beta0 = np.zeros(self.p)
        self.n_pirls = 0
        self._cache: dict[bool, tuple[bytes, PirlsResult]] = {}  # last modes, by joint

    def _cached(self, joint: bool, key: Array) -> PirlsResult | None:
        hit = self._cache.get(joint)
        return hit[1] if hit is not None and hit[0] == key.tobytes() else None

    # --- stage one: theta only, PIRLS over (beta, u) ----------------------------------
    def joint_modes(self, theta: Array, fresh: bool = False) -> PirlsResult:
        hit = None if fresh else self._cached(True, theta)
        if hit is not None:
            return hit
        start = None
        if fresh or not np.all(np.isfinite(self._beta0)):
            fam = self.rows.family
            start = fam.link.link(fam.starting_mu(self.rows.y, self.rows.pw))
            self._u[:] = 0.0
        res = pirls(
            self.structure,
            self.rows,
            self.X,
            self.offset,
            theta,
            self._beta0,
            self._u,
            joint=True,
            start_eta=start,
        )
        self.n_pirls += res.n_iter
        if np.all(np.isfinite(res.u)):
            self._u, self._beta0 = res.u, res.beta
        self._cache[True] = (np.array(theta, dtype=float).tobytes(), res)
        return res

    def deviance0(self, theta: Array) -> float:
        """lme4's nAGQ = 0 deviance: pdev + log|L| at the joint modes."""
        try:
            res = self.joint_modes(np.asarray(theta, dtype=float))
        except np.linalg.LinAlgError:
            return np.inf
        return res.laplace if np.isfinite(res.laplace) else np.inf

    # --- stage two: (theta, beta), PIRLS over u ---------------------------------------
    def split(self, params: Array) -> tuple[Array, Array]:
        params = np.asarray(params, dtype=float)
        return params[: self.n_theta], params[self.n_theta :]

    def modes(self, theta: Array, beta: Array) -> PirlsResult:
        key = np.concatenate([theta, beta])
        hit = self._cached(False, key)
        if hit is not None:
            return hit
        try:
            res = pirls(self.structure, self.rows, self.X, self.offset, theta, beta, self._u)
        except np.linalg.LinAlgError:
            res = None
        if res is None or not np.isfinite(res.pdev):  # a bad warm start: from zero
            res = pirls(
                self.structure,
                self.rows,
                self.X,
                self.offset,
                theta,
                beta,
                np.zeros_like(self._u),
            )
        self.n_pirls += res.n_iter
        if np.all(np.isfinite(res.u)):
            self._u = res.u
        self._cache[False] = (key.tobytes(), res)
        return res

    def deviance_at(self, res: PirlsResult, theta: Array) -> float:
        if self.nagq > 1:
            return agq_deviance(self.structure, self.rows, theta, res, self.nagq)
        return res.laplace

    def deviance(self, params: Array) -> float:
        """-2 log-likelihood at (theta, beta): lme4's nAGQ > 0 devfun, full constants."""
        theta, beta = self.split(params)
        try:
            dev = self.deviance_at(self.modes(theta, beta), theta)
        except np.linalg.LinAlgError:
            return np.inf
        return dev if np.isfinite(dev) else np.inf

    @property
    def has_gradient(self) -> bool:
        return self.nagq == 1 and self.rows.canonical

    def gradient0(self, theta: Array) -> Array:
        """Analytic gradient of the nAGQ = 0 deviance (canonical links)."""
        theta = np.asarray(theta, dtype=float)
        try:
            res = self.joint_modes(theta)
            return laplace_gradient(self.structure, self.rows, self.X, theta, res, joint=True)
        except np.linalg.LinAlgError:  # outside the feasible region: f is huge there
            return np.zeros_like(theta)

    def gradient(self, params: Array) -> Array:
        """Analytic gradient of the Laplace deviance (canonical links)."""
        theta, beta = self.split(params)
        try:
            res = self.modes(theta, beta)
            return laplace_gradient(self.structure, self.rows, self.X, theta, res)
        except np.linalg.LinAlgError:
            return np.zeros_like(params)

    # --- the fit ----------------------------------------------------------------------
    def fit(
        self,
        theta0: Array,
        lower: Array,
        beta0: Array | None = None,
        progress: Progress | None = None,
        max_iter: int = 1000,
        stage0_only: bool = False,
    ) -> GlmmOptimum:
        self.joint_modes(theta0, fresh=True)
        if beta0 is None:
            stage0 = minimize_bounded(
                self.deviance0,
                theta0,
                lower,
                progress=progress,
                max_iter=max_iter,
                polish=False,
                rough=not stage0_only,
                jac=self.gradient0 if self.rows.canonical else None,
            )
            theta0 = stage0.x
            beta0 = self.joint_modes(theta0).beta
        else:
            stage0 = OptimizeResult(theta0, np.nan, 0, 0, True, "start given")
        self._u = self.modes(theta0, beta0).u
        if stage0_only:
            res = self.modes(theta0, beta0)
            return GlmmOptimum(theta0, beta0, res, self.deviance_at(res, theta0), stage0, stage0)
        x0 = np.concatenate([theta0, beta0])
        lo = np.concatenate([lower, np.full(self.p, -np.inf)])
        sd = np.std(self.X, axis=0)
        scale = np.concatenate([np.ones(self.n_theta), np.where(sd > 0, sd, 1.0)])
        stage1 = minimize_scaled(
            self.deviance,
            x0,
            lo,
            scale,
            jac=self.gradient if self.has_gradient else None,
            progress=progress,
            max_iter=max_iter,
        )
        theta, beta = self.split(stage1.x)
        res = self.modes(theta, beta)
        return GlmmOptimum(theta, beta, res, self.deviance_at(res, theta), stage0, stage1)

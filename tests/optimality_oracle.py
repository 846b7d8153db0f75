"""An optimality oracle for GLM fits that shares nothing with glmx's solver.

The deviance of every family is written out here from its textbook formula, with the
inverse links (no clamps: outside a family's or link's valid range the deviance is
+inf), and minimized by scipy.optimize (L-BFGS-B with the analytic gradient, and
Nelder-Mead) from several starts, each result polished by damped Fisher scoring with a
backtracking line search. The parameters are coordinates in an orthonormal basis of the
column space of X, so aliased columns need no special handling and badly scaled columns
do not hurt the optimizers.

Two numbers judge a fit:

* the *Newton decrement* (the scaled score) at the fit's linear predictor,
  ``U' (X'WX)^{-1} U`` with ``U = X' (w (y - mu) mu_eta / V)`` and
  ``W = w mu_eta^2 / V``: the deviance a Fisher-scoring step would still remove
  (the gradient of the deviance is ``-2 U`` and its expected Hessian ``2 X'WX``, so
  half of ``g' H^{-1} g`` is exactly the decrement). At an optimum it is 0; glmx's
  certificate of convergence is that it is below ``1e-8 * (|deviance| + 0.1)``, the
  same scale as R's relative deviance criterion.
* the *oracle's best deviance*: the lowest deviance any start reaches.

Points where the mean of a row whose response is at the edge of the range (a count of 0,
a proportion of 0 or 1) is within ``MU_MARGIN`` of that edge are out of bounds for the
oracle: the deviance of such rows keeps falling toward the edge (separation), where
glmx's links use R's clamps (logit beyond |eta| = 30, log below machine epsilon ...), so
a "better" point there is an artefact of separation, not a fit glmx could report.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special

Array = np.ndarray

MU_MARGIN = 1e-12  # means this close to the edge of their range are out of bounds

# ---------------------------------------------------------------- inverse links
# name -> (mu(eta), dmu/deta(eta), eta(mu), eta valid?)
LINKS: dict[str, tuple[Callable, Callable, Callable, Callable]] = {
    "identity": (lambda e: e, lambda e: np.ones_like(e), lambda m: m, lambda e: True),
    "log": (np.exp, np.exp, np.log, lambda e: True),
    "inverse": (
        lambda e: 1.0 / e,
        lambda e: -1.0 / e**2,
        lambda m: 1.0 / m,
        lambda e: np.all(e != 0),
    ),
    "sqrt": (lambda e: e**2, lambda e: 2.0 * e, np.sqrt, lambda e: np.all(e > 0)),
    "inverse_squared": (
        lambda e: e**-0.5,
        lambda e: -0.5 * e**-1.5,
        lambda m: m**-2.0,
        lambda e: np.all(e > 0),
    ),
    "logit": (
        special.expit,
        lambda e: special.expit(e) * special.expit(-e),
        special.logit,
        lambda e: True,
    ),
    "probit": (
        special.ndtr,
        lambda e: np.exp(-0.5 * e**2) / np.sqrt(2 * np.pi),
        special.ndtri,
        lambda e: True,
    ),
    "cauchit": (
        lambda e: 0.5 + np.arctan(e) / np.pi,
        lambda e: 1.0 / (np.pi * (1.0 + e**2)),
        lambda m: np.tan(np.pi * (m - 0.5)),
        lambda e: True,
    ),
    "cloglog": (
        lambda e: -np.expm1(-np.exp(e)),
        lambda e: np.exp(e - np.exp(e)),
        lambda m: np.log(-np.log1p(-m)),
        lambda e: True,
    ),
    "loglog": (
        lambda e: np.exp(-np.exp(-e)),
        lambda e: np.exp(-e - np.exp(-e)),
        lambda m: -np.log(-np.log(m)),
        lambda e: True,
    ),
}


def _ylogy_over(y: Array, mu: Array) -> Array:
    """y log(y / mu), 0 at y = 0."""
    safe = np.where(y > 0, y, 1.0)
    return np.where(y > 0, y * np.log(safe / mu), 0.0)


# ---------------------------------------------------------------- families
@dataclasses.dataclass(frozen=True)
class Fam:
    """A family as the oracle sees it: variance, unit deviance, range of mu."""

    name: str
    variance: Callable[[Array], Array]
    unit_deviance: Callable[[Array, Array], Array]
    lower: float | None  # mu > lower (None: unbounded)
    upper: float | None  # mu < upper
    power: float | None = None  # V = mu^power (for log V where V over- or underflows)


def _tweedie_dev(p: float) -> Callable[[Array, Array], Array]:
    def dev(y: Array, mu: Array) -> Array:
        return 2.0 * (
            np.where(y > 0, y, 0.0) ** (2 - p) / ((1 - p) * (2 - p))
            - y * mu ** (1 - p) / (1 - p)
            + mu ** (2 - p) / (2 - p)
        )

    return dev


def _nb_dev(theta: float) -> Callable[[Array, Array], Array]:
    def dev(y: Array, mu: Array) -> Array:
        return 2.0 * (_ylogy_over(y, mu) - (y + theta) * np.log((y + theta) / (mu + theta)))

    return dev


def family(name: str, theta: float = 2.0, power: float = 1.5) -> Fam:
    if name == "gaussian":
        return Fam(name, lambda m: np.ones_like(m), lambda y, m: (y - m) ** 2, None, None)
    if name == "binomial":
        return Fam(
            name,
            lambda m: m * (1 - m),
            lambda y, m: 2.0 * (_ylogy_over(y, m) + _ylogy_over(1 - y, 1 - m)),
            0.0,
            1.0,
        )
    if name == "poisson":
        return Fam(name, lambda m: m, lambda y, m: 2.0 * (_ylogy_over(y, m) - (y - m)), 0.0, None)
    if name == "gamma":
        return Fam(
            name, lambda m: m**2, lambda y, m: 2.0 * (-np.log(y / m) + (y - m) / m), 0.0, None, 2.0
        )
    if name == "inverse_gaussian":
        return Fam(name, lambda m: m**3, lambda y, m: (y - m) ** 2 / (y * m**2), 0.0, None, 3.0)
    if name == "negative_binomial":
        return Fam(name, lambda m: m + m**2 / theta, _nb_dev(theta), 0.0, None)
    if name == "tweedie":
        return Fam(name, lambda m: m**power, _tweedie_dev(power), 0.0, None, power)
    raise ValueError(name)


# ---------------------------------------------------------------- the problem
@dataclasses.dataclass(repr=False)
class Problem:
    """A GLM problem: everything the oracle needs, independent of glmx."""

    family: str
    link: str
    X: Array
    y: Array
    w: Array
    offset: Array
    theta: float = 2.0
    power: float = 1.5

    def __post_init__(self) -> None:
        self.fam = family(self.family, self.theta, self.power)
        self.inv, self.mu_eta, self.g, self.eta_ok = LINKS[self.link]
        # rows whose response is at the edge of mu's range (y = 0 counts, proportions 0
        # or 1): their means may approach the edge only up to a margin
        pos = self.w > 0
        lo, hi = self.fam.lower, self.fam.upper
        self.at_lower = np.flatnonzero(pos & (self.y <= lo)) if lo is not None else np.zeros(0, int)
        self.at_upper = np.flatnonzero(pos & (self.y >= hi)) if hi is not None else np.zeros(0, int)
        # orthonormal basis of the column space of X (aliased columns add nothing)
        u, s, _ = np.linalg.svd(self.X, full_matrices=False)
        r = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
        self.Q = u[:, :r]

    # -- pieces at a linear predictor
    def means(self, eta: Array, margin: float = 0.0) -> Array | None:
        """mu = g^{-1}(eta), or None when eta or mu are out of range (within ``margin``
        of the edge of mu's range counts as out). Call with numpy's errors silenced."""
        if not (np.isfinite(eta).all() and self.eta_ok(eta)):
            return None
        mu = self.inv(eta)
        if not np.isfinite(mu).all():
            return None
        lo, hi = self.fam.lower, self.fam.upper
        if lo is not None and (
            mu.min() <= lo
            or (margin and self.at_lower.size and mu[self.at_lower].min() <= lo + margin)
        ):
            return None
        if hi is not None and (
            mu.max() >= hi
            or (margin and self.at_upper.size and mu[self.at_upper].max() >= hi - margin)
        ):
            return None
        return mu

    def deviance_at(self, eta: Array, margin: float = 0.0) -> float:
        mu = self.means(eta, margin)
        if mu is None:
            return np.inf
        d = float(self.w @ self.fam.unit_deviance(self.y, mu))
        return d if np.isfinite(d) else np.inf

    def score_parts(self, eta: Array) -> tuple[Array, Array] | None:
        """(w (y - mu) mu_eta / V, w mu_eta^2 / V) at eta, or None out of range."""
        mu = self.means(eta)
        if mu is None:
            return None
        me = self.mu_eta(eta)
        with np.errstate(all="ignore"):
            # as ratios, so that means near 1e+-260 do not over- or underflow mu^2
            a = me / self.fam.variance(mu)  # mu_eta / V
            odd = ~np.isfinite(a) | ((a == 0) & (me != 0))
            if odd.any() and self.fam.power is not None:
                logv = self.fam.power * np.log(mu[odd])
                a[odd] = np.sign(me[odd]) * np.exp(np.log(np.abs(me[odd])) - logv)
            z = self.w * (self.y - mu) * a
            W = self.w * me * a
        if not (np.isfinite(z).all() and np.isfinite(W).all()):
            return None
        return z, W

    def newton_decrement(self, eta: Array) -> float:
        """U' (X'WX)^{-1} U over the column space of X (inf when not computable)."""
        parts = self.score_parts(eta)
        if parts is None:
            return np.inf
        z, W = parts
        U = self.Q.T @ z
        info = self.Q.T @ (W[:, None] * self.Q)
        try:
            sol = np.linalg.lstsq(info, U, rcond=1e-14)[0]
        except np.linalg.LinAlgError:
            return np.inf
        dec = float(U @ sol)
        return dec if np.isfinite(dec) else np.inf

    # -- optimization over gamma (eta = offset + Q gamma)
    def eta_of(self, gamma: Array) -> Array:
        return self.offset + self.Q @ gamma

    def gamma_of(self, eta: Array) -> Array:
        return self.Q.T @ (eta - self.offset)

    def objective(self, gamma: Array) -> float:
        return self.deviance_at(self.eta_of(gamma), MU_MARGIN)

    def gradient(self, gamma: Array) -> Array:
        parts = self.score_parts(self.eta_of(gamma))
        if parts is None:
            return np.zeros_like(gamma)
        return -2.0 * (self.Q.T @ parts[0])

    def fisher_polish(self, gamma: Array, steps: int = 40) -> tuple[Array, float]:
        """Damped Fisher scoring with backtracking: only ever lowers the deviance."""
        f = self.objective(gamma)
        for _ in range(steps):
            parts = self.score_parts(self.eta_of(gamma))
            if parts is None:
                break
            z, W = parts
            info = self.Q.T @ (W[:, None] * self.Q)
            try:
                step = np.linalg.lstsq(info, self.Q.T @ z, rcond=1e-14)[0]
            except np.linalg.LinAlgError:
                break
            t, improved = 1.0, False
            for _ in range(50):
                cand = gamma + t * step
                fc = self.objective(cand)
                if fc < f:
                    gamma, improved = cand, f - fc > 1e-15 * (abs(f) + 0.1)
                    f = fc
                    break
                t /= 2.0
            if not improved:
                break
        return gamma, f

    def minimize_from(self, gamma0: Array) -> tuple[Array, float]:
        """L-BFGS-B (analytic gradient) from gamma0, then Fisher-scoring polish."""
        best_g, best_f = gamma0, self.objective(gamma0)
        if not np.isfinite(best_f):
            return best_g, best_f
        r = optimize.minimize(
            self.objective,
            gamma0,
            jac=self.gradient,
            method="L-BFGS-B",
            options={"maxiter": 200, "ftol": 1e-15, "gtol": 1e-12},
        )
        if np.isfinite(r.fun) and r.fun < best_f:
            best_g, best_f = r.x, float(r.fun)
        g, f = self.fisher_polish(best_g)
        return (g, f) if f < best_f else (best_g, best_f)

    def nelder_mead(self, gamma0: Array) -> tuple[Array, float]:
        """Derivative-free: no use of the gradient or of the (possibly infinite) barrier's
        shape; then Fisher-scoring polish."""
        f0 = self.objective(gamma0)
        r = optimize.minimize(
            self.objective,
            gamma0,
            method="Nelder-Mead",
            options={"maxiter": 200 * gamma0.size, "xatol": 1e-10, "fatol": 1e-14},
        )
        g, f = (r.x, float(r.fun)) if r.fun < f0 else (gamma0, f0)
        g2, f2 = self.fisher_polish(g)
        return (g2, f2) if f2 < f else (g, f)

    def starts(self, fit_eta: Array | None, rng: np.random.Generator, n_random: int) -> list[Array]:
        """glmx's estimate and perturbations of it, the intercept-only start at g(mean y),
        a least-squares start on g(y), and random perturbations of the intercept start."""
        out: list[Array] = []
        if fit_eta is not None and np.all(np.isfinite(fit_eta)):
            g0 = self.gamma_of(fit_eta)
            out.append(g0)
            for scale in (1e-3, 0.3):
                out.append(g0 + rng.normal(size=g0.size) * scale * (np.abs(g0) + 0.1))
        pos = self.w > 0
        ybar = float(np.sum(self.w[pos] * self.y[pos]) / np.sum(self.w[pos]))
        ybar = self._inside(np.array([ybar]))[0]
        with np.errstate(all="ignore"):
            c = float(self.g(np.array([ybar]))[0])
        # eta = g(mean y) everywhere (projected on the column space, net of the offset)
        icpt = self.gamma_of(np.full(self.y.shape, c)) if np.isfinite(c) else None
        if icpt is not None:
            out.append(icpt)
            for _ in range(n_random):
                out.append(icpt + rng.normal(size=icpt.size) * (0.5 * np.abs(icpt) + 0.5))
        with np.errstate(all="ignore"):
            target = self.g(self._inside(self.y.astype(float)))
        if np.all(np.isfinite(target)):
            ls = self.Q.T @ (target - self.offset)
            # shrink toward the intercept start until valid
            for _ in range(30):
                if np.isfinite(self.objective(ls)) or icpt is None:
                    break
                ls = 0.5 * (ls + icpt)
            out.append(ls)
        return out

    def _inside(self, mu: Array) -> Array:
        lo, hi = self.fam.lower, self.fam.upper
        if lo is not None and hi is not None:
            return np.clip(mu, lo + 0.05, hi - 0.05)
        if lo is not None:
            return np.maximum(mu, lo + 0.05 * (np.max(np.abs(mu)) + 1e-3))
        return mu

    def best(
        self, fit_eta: Array | None, seed: int = 0, thorough: bool = True
    ) -> tuple[float, Array | None]:
        """The lowest deviance reached from all starts, and its linear predictor."""
        rng = np.random.default_rng(seed)
        best_f, best_g = np.inf, None
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            starts = self.starts(fit_eta, rng, n_random=2 if thorough else 0)
            for g0 in starts:
                g, f = self.minimize_from(g0)
                if f < best_f:
                    best_f, best_g = f, g
            if thorough and best_g is not None:
                g, f = self.nelder_mead(best_g)
                if f < best_f:
                    best_f, best_g = f, g
        return best_f, None if best_g is None else self.eta_of(best_g)


def separation_like(prob: Problem, eta: Array) -> bool:
    """A fit whose means are at the edge of their range (where glmx's links clamp)."""
    mu = prob.means(eta)
    if mu is None:
        return True
    return prob.means(eta, margin=1e-8) is None


def kept_columns(coef: Sequence[float]) -> Array:
    return np.isfinite(np.asarray(coef, dtype=float))


# ---------------------------------------------------------------- random problems
ALLOWED_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity", "log", "inverse"),
    "binomial": ("logit", "probit", "cloglog", "cauchit", "log", "loglog"),
    "poisson": ("log", "identity", "sqrt"),
    "gamma": ("inverse", "identity", "log"),
    "inverse_gaussian": ("inverse_squared", "inverse", "identity", "log"),
    "negative_binomial": ("log", "sqrt", "identity"),
    "tweedie": ("log",),
}
CANONICAL = {("gaussian", "identity"), ("binomial", "logit"), ("poisson", "log")}


@dataclasses.dataclass(repr=False)
class Drawn:
    """A random problem as glmx is given it, and as the oracle sees it."""

    prob: Problem
    has_intercept: bool
    start: Array | None  # coefficients for start= (None: glmx's own start)
    glmx_weights: Array | None
    glmx_offset: Array | None
    label: str
    formula: bool = False  # fit by glmx.glm(formula, frame) rather than glmx.glm_fit(X, y)

    def __repr__(self) -> str:
        return f"draw_problem({self.label})"

    def fit(self):  # noqa: ANN201 - a glmx.GLMResults
        import glmx

        prob = self.prob
        fam = glmx_family(prob)
        if not self.formula:
            return glmx.glm_fit(
                prob.X,
                prob.y,
                family=fam,
                weights=self.glmx_weights,
                offset=self.glmx_offset,
                start=self.start,
                intercept=self.has_intercept,
            )
        first = 1 if self.has_intercept else 0
        names = [f"x{j}" for j in range(1, prob.X.shape[1] - first + 1)]
        frame = {name: prob.X[:, first + j] for j, name in enumerate(names)}
        frame["y"] = prob.y
        kw = {}
        if self.glmx_weights is not None:
            frame["w"], kw["weights"] = self.glmx_weights, "w"
        if self.glmx_offset is not None:
            frame["off"], kw["offset"] = self.glmx_offset, "off"
        rhs = " + ".join(names) + ("" if self.has_intercept else " - 1")
        return glmx.glm(f"y ~ {rhs}", pd.DataFrame(frame), family=fam, start=self.start, **kw)


def _mean_shape(rng: np.random.Generator, z: Array, shape: str, positive: bool) -> Array:
    """A mean curve in z: the model's own shape or a misspecified one."""
    lo, hi = float(z.min()), float(z.max())
    u = (z - lo) / (hi - lo + 1e-12)  # in [0, 1]
    s = rng.uniform(0.3, 1.5)
    if shape == "exp":
        m = np.exp(s * (z - z.mean()))
    elif shape == "linear":
        m = 0.15 + u if positive else z
    elif shape == "inverse":
        m = 1.0 / (0.2 + s * u)
    elif shape == "quadratic":
        m = 0.1 + (2 * u - 1) ** 2
    else:  # "step": a jump the smooth link cannot follow
        m = np.where(u > rng.uniform(0.3, 0.7), 2.0, 0.3)
    return m


def draw_problem(
    family_name: str,
    seed: int,
    link: str,
    n: int,
    k: int,
    intercept: bool,
    alias: str,
    weights: str,
    offset: str,
    shape: str,
    noise: float,
    bad_start: bool,
    formula: bool = False,
) -> Drawn:
    """A small random GLM problem for glmx and the oracle.

    ``shape`` is the curve of the true mean in the predictors' combination z (``exp``,
    ``linear``, ``inverse``, ``quadratic``, ``step``): any of them with any link, so most
    models are misspecified; ``noise`` scales the response's spread (gaussian, gamma,
    inverse gaussian: large noise puts responses near 0, where R's mustart g(y) is a poor
    start for the log and inverse links)."""
    rng = np.random.default_rng(seed)
    cols = []
    for _ in range(k):
        cols.append(rng.normal(size=n) * 10.0 ** rng.uniform(-1, 1) + rng.choice([0.0, 0.0, 5.0]))
    Xp = np.column_stack(cols)
    coefs = rng.normal(size=k)
    z = Xp @ coefs
    z = (z - z.mean()) / (z.std() + 1e-12)
    positive = family_name != "gaussian" or link != "identity"
    m = _mean_shape(rng, z, shape, positive)
    level = 10.0 ** rng.uniform(-0.5, 1.2)
    w = np.ones(n)
    if family_name == "binomial":
        p = 0.03 + 0.94 * (m - m.min()) / (m.max() - m.min() + 1e-12)
        if rng.random() < 0.5:
            p = 1 - p
        if link == "log":
            p = 0.05 + 0.6 * p  # away from 1 most of the time
        trials = rng.integers(1, 6, size=n) if rng.random() < 0.6 else np.ones(n, int)
        y = rng.binomial(trials, p) / trials
        w = trials.astype(float)
    elif family_name == "gaussian":
        mu = level * m if positive else level * (m + rng.normal())
        y = mu + rng.normal(size=n) * noise * level * (np.std(m) + 0.1)
        if link != "identity":
            y = np.abs(y) + 0.01 * level
    elif family_name in ("poisson", "negative_binomial"):
        mu = level * m / np.mean(m)
        y = (
            rng.poisson(mu)
            if family_name == "poisson"
            else rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
        )
        y = y.astype(float)
    elif family_name == "gamma":
        mu = level * m
        shape_par = 1.0 / max(noise, 0.05) ** 2
        y = rng.gamma(shape_par, mu / shape_par)
        y = np.maximum(y, 1e-8 * level)
    elif family_name == "inverse_gaussian":
        mu = level * m
        y = rng.wald(mu, mu / max(noise, 0.05) ** 2)
        y = np.maximum(y, 1e-8 * level)
    elif family_name == "tweedie":  # compound Poisson-gamma with p = 1.5, phi = noise
        mu = level * m
        phi = max(noise, 0.1)
        lam = mu**0.5 / (phi * 0.5)
        counts = rng.poisson(lam)
        y = np.array(
            [rng.gamma(c, phi * 0.5 * mu_i**0.5) if c > 0 else 0.0 for c, mu_i in zip(counts, mu)]
        )
    else:
        raise ValueError(family_name)

    X = Xp.copy()
    if alias == "duplicate":
        X = np.column_stack([X, X[:, 0]])
    elif alias == "combination":
        extra = 2.0 * X[:, 0] - (X[:, 1] if k > 1 else 0.0) + (3.0 if intercept else 0.0)
        X = np.column_stack([X[:, :1], extra, X[:, 1:]])
    elif alias == "constant" and intercept:  # a second intercept-like column
        X = np.column_stack([X, np.full(n, 2.0)])
    if intercept:
        X = np.column_stack([np.ones(n), X])

    glmx_w = None
    if weights == "positive":
        w = w * rng.uniform(0.2, 3.0, size=n)
        glmx_w = w
    elif weights == "zeros":
        zero = rng.random(n) < 0.25
        zero[: max(3, n // 2)] = False
        w = np.where(zero, 0.0, w)
        glmx_w = w
    elif family_name == "binomial" and np.any(w != 1):
        glmx_w = w
    if family_name == "binomial":
        y = np.where(w > 0, y, 0.0)

    off = np.zeros(n)
    glmx_off = None
    if offset != "none":
        with np.errstate(all="ignore"):
            g_mu = LINKS[link][2](
                np.clip(y, 0.05, 0.95) if family_name == "binomial" else np.maximum(y, 0.05)
            )
        spread = float(np.std(g_mu[np.isfinite(g_mu)])) if np.any(np.isfinite(g_mu)) else 1.0
        off = rng.normal(size=n) * 0.3 * (spread + 0.01)
        if offset == "shifted":
            off = off + rng.normal() * (abs(float(np.nanmedian(g_mu))) + 0.1)
        glmx_off = off

    prob = Problem(family_name, link, X, y.astype(float), w, off)
    start = None
    if bad_start and intercept:
        # eta = g(mean y) + random slopes, shrunk toward the intercept until valid
        pos = w > 0
        ybar = float(np.sum(w[pos] * y[pos]) / np.sum(w[pos]))
        c = float(prob.g(prob._inside(np.array([ybar])))[0])
        b = np.zeros(X.shape[1])
        b[0] = c - float(np.mean(off))
        slopes = rng.normal(size=X.shape[1] - 1) * (abs(c) + 0.5) / (X[:, 1:].std(axis=0) + 1e-9)
        with np.errstate(all="ignore"):
            for _ in range(40):
                b[1:] = slopes
                if np.isfinite(prob.deviance_at(off + X @ b)):
                    break
                slopes = slopes / 2.0
        start = b
    label = (
        f"{family_name}/{link} seed={seed} n={n} k={k} intercept={intercept} alias={alias} "
        f"weights={weights} offset={offset} shape={shape} noise={noise} bad_start={bad_start} "
        f"formula={formula}"
    )
    return Drawn(prob, intercept, start, glmx_w, glmx_off, label, formula)


# ---------------------------------------------------------------- judging a glmx fit
def glmx_family(prob: Problem):  # noqa: ANN201 - a glmx family
    import glmx

    if prob.family == "negative_binomial":
        return glmx.families.NegativeBinomial(theta=prob.theta, link=prob.link)
    if prob.family == "tweedie":
        return glmx.families.Tweedie(power=prob.power, link=prob.link)
    return glmx.families.get_family(prob.family, prob.link)


@dataclasses.dataclass
class Verdict:
    """What glmx did on a problem and what the oracle says about it."""

    error: BaseException | None = None
    converged: bool | None = None
    deviance: float = np.nan  # glmx's reported deviance
    own_deviance: float = np.nan  # the oracle's deviance at glmx's linear predictor
    null_deviance: float = np.nan
    decrement: float = np.nan
    best: float = np.nan
    separation: bool = False
    convergence_warned: bool = False
    warnings: tuple[str, ...] = ()
    findings: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"converged={self.converged} deviance={self.deviance:.10g} (oracle's function: "
            f"{self.own_deviance:.10g}) null={self.null_deviance:.10g} "
            f"decrement={self.decrement:.3g} oracle best={self.best:.10g} "
            f"warnings={list(self.warnings)}"
        )


def judge(d: Drawn, thorough: bool | None = None, oracle_seed: int = 0) -> Verdict:
    """Fit ``d`` with glmx and check properties (a)-(e); ``findings`` lists violations."""
    import glmx

    prob = d.prob
    v = Verdict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = d.fit()
        except glmx.GlmxError as e:  # an impossible problem, said so: fine
            v.error = e
            return v
        except Exception as e:  # noqa: BLE001 - (e) any other exception is a bug
            v.error = e
            v.findings.append(f"(e) non-glmx exception {type(e).__name__}: {e}")
            return v
    v.convergence_warned = any(issubclass(m.category, glmx.ConvergenceWarning) for m in caught)
    v.separation = any(issubclass(m.category, glmx.SeparationWarning) for m in caught)
    v.converged = bool(fit.converged)
    v.deviance = float(fit.deviance)
    v.null_deviance = float(fit.null_deviance)
    v.warnings = tuple(fit.warnings)
    coef = np.asarray(fit.coef, dtype=float)
    lp = np.asarray(fit.linear_predictor, dtype=float)
    kept = kept_columns(coef)
    tol = 1e-8 * (abs(v.deviance) + 0.1)

    # (c) the coefficients reproduce the linear predictor
    eta = prob.X[:, kept] @ coef[kept] + prob.offset
    scale = np.max(np.abs(lp)) if lp.size else 1.0
    if not np.all(np.isfinite(lp)) or np.max(np.abs(eta - lp)) > 1e-8 * (scale + 1e-300):
        v.findings.append(
            f"(c) X[:, kept] @ coef[kept] + offset differs from linear_predictor by "
            f"{np.max(np.abs(eta - lp)):.3g} (max |eta| {scale:.3g})"
        )
    with np.errstate(all="ignore"):
        v.own_deviance = prob.deviance_at(lp)
        v.separation = v.separation or separation_like(prob, lp)
        v.decrement = prob.newton_decrement(lp)
    # the reported deviance is the deviance at the fit, up to rounding in its terms (an
    # interpolating fit's deviance is a sum of cancelling terms of the null's magnitude)
    slack = 1e-7 * (abs(v.null_deviance) + 0.1) if np.isfinite(v.null_deviance) else 1e-9
    if np.isfinite(v.own_deviance) and not np.isclose(
        v.own_deviance, v.deviance, rtol=1e-7, atol=slack
    ):
        v.findings.append(
            f"reported deviance {v.deviance:.12g} is not the deviance at the fit {v.own_deviance:.12g}"
        )
    if thorough is None:
        thorough = (prob.family, prob.link) not in CANONICAL
    v.best, _ = prob.best(lp, seed=oracle_seed, thorough=thorough)
    reference = v.own_deviance if np.isfinite(v.own_deviance) else v.deviance
    better = v.best < reference - 1e-6 * (abs(reference) + 0.1)

    if v.converged and not v.separation:
        # (a) converged => the certificate holds and no start does better
        if not v.decrement <= tol:
            v.findings.append(
                f"(a) converged=True but the Newton decrement is {v.decrement:.3g} > {tol:.3g}"
            )
        if v.best < reference - tol:
            v.findings.append(
                f"(a) converged=True at deviance {reference:.10g} but the oracle reaches {v.best:.10g}"
            )
        # (d) no worse than the intercept-only model
        if d.has_intercept and v.deviance > v.null_deviance + 1e-8 * (abs(v.null_deviance) + 0.1):
            v.findings.append(
                f"(d) converged=True at deviance {v.deviance:.10g} above the null deviance {v.null_deviance:.10g}"
            )
    if better and not v.separation:
        # (b) a clearly better point exists => not converged, and said so
        if v.converged:
            v.findings.append(
                f"(b) the oracle reaches {v.best:.10g} < {reference:.10g} yet converged=True"
            )
        if not v.convergence_warned:
            v.findings.append(
                f"(b) the oracle reaches {v.best:.10g} < {reference:.10g} but no ConvergenceWarning"
            )
    return v

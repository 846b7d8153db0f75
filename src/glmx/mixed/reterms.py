"""Random-effect terms evaluated on the data: grouping factors, Z and the theta layout.

For a term ``(lhs | g)`` with k columns in the model matrix of ``lhs`` and m levels of g,
the random effects are ``b = Lambda u`` with u standard normal, ``Lambda = I_m (x) T`` and
T the k x k lower-triangular relative covariance factor.  As in lme4, u is laid out term
by term and, within a term, level by level (k values per level); theta holds each term's
lower triangle of T in column-major order, terms sorted by decreasing number of levels
(``mkReTrms``: when any term has more levels than the one before it, the order becomes
``rev(order(nl))``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic.errors import FormulaicError
from numpy.typing import NDArray

from glmx.design.contrasts import MATERIALIZER
from glmx.errors import DataError, FormulaError
from glmx.mixed.reformula import ReTermSpec

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]


def r_column_name(name: str) -> str:
    """formulaic's column names as R's model.matrix writes them: ``Intercept`` ->
    ``(Intercept)``, ``period[T.p2]`` -> ``periodp2``, ``period[p1]`` -> ``periodp1``."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)


def lower_tri(k: int) -> tuple[IntArray, IntArray]:
    """Rows and columns of a k x k lower triangle in column-major order (lme4's theta)."""
    rows = [i for j in range(k) for i in range(j, k)]
    cols = [j for j in range(k) for _ in range(j, k)]
    return np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)


def _level_label(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    return str(value)


def _factor(col: pd.Series) -> tuple[IntArray, NDArray[Any]]:
    """Codes and sorted levels of one grouping column, as R's ``factor()``: a categorical
    keeps its category order (unused categories dropped), numbers sort as numbers,
    strings as strings."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = np.unique(np.asarray(col.cat.codes))
        present = present[present >= 0]
        values = np.asarray(col.cat.categories)[present]
        remap = np.full(len(col.cat.categories), -1, dtype=np.intp)
        remap[present] = np.arange(present.size)
        return remap[np.asarray(col.cat.codes)], values
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        col = col.astype(str)
    codes, uniques = pd.factorize(col, sort=True)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques)


@dataclass(frozen=True)
class ReTerm:
    """One random-effect term on the rows used: ``codes`` (n,) index the levels and X
    (n x k) is the model matrix of the term's left-hand side."""

    spec: ReTermSpec
    columns: tuple[str, ...]
    levels: tuple[str, ...]
    codes: IntArray
    X: Array
    model_spec: Any  # formulaic's ModelSpec of the left-hand side, for new data
    factor_values: tuple[NDArray[Any], ...]  # each grouping column's levels
    keys: NDArray[np.int64]  # sorted mixed-radix keys of the observed combinations

    @property
    def group(self) -> str:
        return self.spec.group

    @property
    def k(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    def T(self, theta: Array) -> Array:
        """The k x k lower-triangular factor filled from this term's theta."""
        out = np.zeros((self.k, self.k))
        rows, cols = lower_tri(self.k)
        out[rows, cols] = theta
        return out

    def Z(self) -> sp.csr_matrix:
        """n x (m k) sparse: row i holds X[i] in the columns of its level."""
        n, k = self.X.shape
        cols = self.codes[:, None] * k + np.arange(k)
        rows = np.repeat(np.arange(n), k)
        return sp.csr_matrix((self.X.ravel(), (rows, cols.ravel())), shape=(n, self.n_levels * k))

    def new_codes(self, df: pd.DataFrame) -> IntArray:
        """Level index of each row of new data; -1 for levels (or NA) the fit never saw."""
        key = np.zeros(len(df), dtype=np.int64)
        unseen = np.zeros(len(df), dtype=bool)
        for name, values in zip(self.spec.factors, self.factor_values):
            if name not in df.columns:
                raise DataError(f"new data lack the grouping column {name!r}")
            col = df[name]
            if col.dtype == object or pd.api.types.is_string_dtype(col):
                col = col.astype(str).where(col.notna())
            codes = pd.Index(values).get_indexer(np.asarray(col))
            unseen |= codes < 0
            key = key * len(values) + np.maximum(codes, 0)
        pos = np.searchsorted(self.keys, key).clip(0, len(self.keys) - 1)
        found = (self.keys[pos] == key) & ~unseen
        return np.where(found, pos, -1).astype(np.intp)

    def new_X(self, df: pd.DataFrame) -> Array:
        """The left-hand side's model matrix for new data (NaN rows where values are NA)."""
        try:
            mm = self.model_spec.get_model_matrix(df, na_action="ignore")
        except FormulaicError as exc:
            raise FormulaError(
                f"cannot build random-effect term {self.spec} for new data: {exc}"
            ) from None
        return np.asarray(mm.to_numpy(dtype=float)).reshape(len(df), self.k)


def build_term(spec: ReTermSpec, df: pd.DataFrame) -> ReTerm:
    """Evaluate one term on the (NA-free) rows of ``df``."""
    missing = [f for f in spec.factors if f not in df.columns]
    if missing:
        raise FormulaError(
            f"grouping factor {missing[0]!r} of random-effect term {spec} is not a column of "
            f"the data (columns: {', '.join(map(str, df.columns[:20]))})"
        )
    key = np.zeros(len(df), dtype=np.int64)
    factor_values = []
    for name in spec.factors:
        codes, values = _factor(df[name])
        key = key * len(values) + codes
        factor_values.append(values)
    keys, codes = np.unique(key, return_inverse=True)
    labels = []
    for k in keys:
        parts = []
        for values in factor_values[::-1]:
            k, c = divmod(int(k), len(values))
            parts.append(_level_label(values[c]))
        labels.append(":".join(parts[::-1]))
    try:
        # R's contrasts (contr.poly for an ordered factor), as the fixed effects
        mm = formulaic.model_matrix(spec.lhs, df, na_action="raise", materializer=MATERIALIZER)
    except FormulaicError as exc:
        raise FormulaError(f"cannot build random-effect term {spec}: {exc}") from None
    except Exception as exc:  # errors of user transforms inside formulaic
        raise FormulaError(f"cannot build random-effect term {spec}: {exc}") from None
    X = np.asarray(mm.to_numpy(dtype=float)).reshape(len(df), -1)
    if X.shape[1] == 0:
        raise FormulaError(f"random-effect term {spec} has no columns")
    if not np.all(np.isfinite(X)):
        raise DataError(f"random-effect term {spec} has non-finite values in its model matrix")
    return ReTerm(
        spec=spec,
        columns=tuple(r_column_name(str(c)) for c in mm.columns),
        levels=tuple(labels),
        codes=np.asarray(codes, dtype=np.intp).ravel(),
        X=X,
        model_spec=mm.model_spec,
        factor_values=tuple(factor_values),
        keys=np.asarray(keys, dtype=np.int64),
    )


def lme4_order(n_levels: Sequence[int]) -> list[int]:
    """lme4's ``mkReTrms`` term order: ``rev(order(nl))`` when any term has more levels
    than the one before it, else the order written."""
    nl = list(n_levels)
    if any(b > a for a, b in zip(nl[:-1], nl[1:])):
        ascending = sorted(range(len(nl)), key=lambda i: nl[i])  # stable, as R's order
        return ascending[::-1]
    return list(range(len(nl)))


class ReTerms:
    """The random-effect terms of a model in lme4's order, with the theta layout."""

    def __init__(self, terms: Sequence[ReTerm]) -> None:
        order = lme4_order([t.n_levels for t in terms])
        self.terms: tuple[ReTerm, ...] = tuple(terms[i] for i in order)
        self.n = int(self.terms[0].X.shape[0])
        sizes = [t.n_levels * t.k for t in self.terms]
        self.u_offsets = np.cumsum([0, *sizes]).astype(int)
        self.q = int(self.u_offsets[-1])
        nth = [t.n_theta for t in self.terms]
        self.theta_offsets = np.cumsum([0, *nth]).astype(int)
        self.n_theta = int(self.theta_offsets[-1])
        lower: list[float] = []
        start: list[float] = []
        names: list[str] = []
        for t in self.terms:
            rows, cols = lower_tri(t.k)
            diag = rows == cols
            lower.extend(np.where(diag, 0.0, -np.inf))
            start.extend(diag.astype(float))
            names.extend(
                f"{t.group}.{t.columns[i]}"
                if i == j
                else f"{t.group}.{t.columns[i]}.{t.columns[j]}"
                for i, j in zip(rows, cols)
            )
        self.lower = np.array(lower)
        self.theta_start = np.array(start)
        self.theta_names = tuple(names)
        # grouping factors in order of first appearance (lme4's flist), with their terms
        self.groups: dict[str, list[int]] = {}
        for i, t in enumerate(self.terms):
            self.groups.setdefault(t.group, []).append(i)

    def theta_of(self, theta: Array, i: int) -> Array:
        return np.asarray(theta[self.theta_offsets[i] : self.theta_offsets[i + 1]])

    def Ts(self, theta: Array) -> list[Array]:
        return [t.T(self.theta_of(theta, i)) for i, t in enumerate(self.terms)]

    def Zt(self) -> sp.csc_matrix:
        """Z' (q x n), sparse, built from the codes (never a dense n x q)."""
        return sp.hstack([t.Z() for t in self.terms], format="csr").T.tocsc()

    def b_from_u(self, theta: Array, u: Array) -> Array:
        """b = Lambda u, term by term (Lambda = I (x) T): b_level = T u_level."""
        out = np.empty_like(u)
        for i, (t, T) in enumerate(zip(self.terms, self.Ts(theta))):
            sl = slice(self.u_offsets[i], self.u_offsets[i + 1])
            out[sl] = (u[sl].reshape(t.n_levels, t.k) @ T.T).ravel()
        return out

    def Zb(self, b: Array) -> Array:
        """Z b without forming Z: sum over terms of X[i] . b[level(i)]."""
        eta = np.zeros(self.n)
        for i, t in enumerate(self.terms):
            bt = b[self.u_offsets[i] : self.u_offsets[i + 1]].reshape(t.n_levels, t.k)
            eta += np.einsum("ij,ij->i", t.X, bt[t.codes])
        return eta

    @property
    def n_groups(self) -> dict[str, int]:
        return {g: self.terms[ix[0]].n_levels for g, ix in self.groups.items()}

    def covariances(self, theta: Array, sigma: float) -> list[Array]:
        """Each term's covariance matrix sigma^2 T T'."""
        return [sigma**2 * T @ T.T for T in self.Ts(theta)]

    def varcorr(self, theta: Array, sigma: float, residual: bool) -> pd.DataFrame:
        """Rows of lme4's ``as.data.frame(VarCorr(fit))``: per term the variances, then the
        covariances (lower triangle, column-major) with their correlations."""
        rows: list[tuple[str, str | None, str | None, float, float]] = []
        seen: dict[str, int] = {}
        for t, S in zip(self.terms, self.covariances(theta, sigma)):
            n_seen = seen.get(t.group, 0)
            seen[t.group] = n_seen + 1
            grp = t.group if n_seen == 0 else f"{t.group}.{n_seen}"  # R's make.unique
            sd = np.sqrt(np.diag(S))
            for i in range(t.k):
                rows.append((grp, t.columns[i], None, float(S[i, i]), float(sd[i])))
            for j in range(t.k):
                for i in range(j + 1, t.k):
                    denom = sd[i] * sd[j]
                    corr = float(S[i, j] / denom) if denom > 0 else float("nan")
                    rows.append((grp, t.columns[j], t.columns[i], float(S[i, j]), corr))
        if residual:
            rows.append(("Residual", None, None, sigma**2, sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def ranef(self, b: Array) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: levels x columns of all its terms."""
        out = {}
        for g, ix in self.groups.items():
            blocks: list[Array] = []
            cols: list[str] = []
            for i in ix:
                t = self.terms[i]
                blocks.append(b[self.u_offsets[i] : self.u_offsets[i + 1]].reshape(-1, t.k))
                cols.extend(t.columns)
            levels = pd.Index(self.terms[ix[0]].levels, name=g)
            out[g] = pd.DataFrame(np.hstack(blocks), index=levels, columns=cols)
        return out

    def group_positions(self, group: str) -> IntArray:
        """Positions in u of each level's effects for one grouping factor (levels x K)."""
        cols = []
        for i in self.groups[group]:
            t = self.terms[i]
            base = self.u_offsets[i] + np.arange(t.n_levels)[:, None] * t.k
            cols.append(base + np.arange(t.k))
        return np.hstack(cols).astype(np.intp)


def build_reterms(specs: Sequence[ReTermSpec], df: pd.DataFrame) -> ReTerms:
    return ReTerms([build_term(s, df) for s in specs])

"""scikit-learn estimators around :func:`glmx.glm_fit`: ``GLMRegressor`` and ``GLMClassifier``.

They fit exactly the model ``glmx.glm_fit`` fits (R's ``glm.fit``), with a column of ones
prepended when ``fit_intercept``, and keep the full glmx result at ``result_`` (summary,
standard errors, confidence intervals, diagnostics).  Dense and scipy.sparse X are
accepted; a pandas DataFrame's column names become ``feature_names_in_`` and name the
coefficients of ``result_``.

``sample_weight`` enters the fit as glmx's *frequency weights* (``freq_weights``): a row
with weight 3 stands for three identical rows.  That is scikit-learn's meaning of
sample_weight (fitting with integer weights equals fitting on repeated rows).  R's prior
weights would give the same coefficients for every family (both multiply the IRLS working
weights), but not the same inference: with prior weights, ``nobs``, the residual degrees of
freedom and hence the dispersion, standard errors, AIC and BIC count rows, not weights.
With frequency weights ``result_`` is, in every number, the fit to the expanded data.

``score`` is D^2, the fraction of deviance explained on the given data,
D^2 = 1 - sum_i w_i d(y_i, mu_i) / sum_i w_i d(y_i, ybar_w), with the fitted family's unit
deviance d and the weighted mean ybar_w of the *scored* y as the null prediction.  It
equals ``sklearn.metrics.d2_tweedie_score`` with the family's variance power (0 gaussian
(= R^2), 1 poisson, 2 gamma, 3 inverse gaussian, p tweedie) and, for binomial, 1 - dev /
null_dev = ``sklearn.metrics.d2_log_loss_score`` (the binomial deviance of 0/1 data is
twice the log-loss).  D^2 values of different families are measured in different
deviances: when a model search varies ``family``, give it one common ``scoring`` (e.g.
``make_scorer(d2_tweedie_score, power=1.5)`` or ``"neg_mean_poisson_deviance"``).

glmx's warnings (``SeparationWarning``, ``ConvergenceWarning``, ...) pass through as they
do from ``glmx.glm`` and are recorded at ``result_.warnings``.  A regressor whose family
refuses negative y (poisson, gamma, ...) sets scikit-learn's ``positive_only`` target tag.

This module is the only place glmx imports scikit-learn (an optional extra, >= 1.6).
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "glmx.sklearn needs scikit-learn >= 1.6: pip install 'scikit-learn>=1.6'"
    ) from exc

from glmx.errors import DataError, FamilyError
from glmx.families import Family, get_family
from glmx.families.exponential import Binomial
from glmx.families.links import Link
from glmx.fitting import glm_fit

Array = NDArray[np.float64]


def _sample_weight(sample_weight: Any, n: int) -> Array | None:
    """sample_weight as a checked float vector (a scalar is broadcast), or None."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n, float(sample_weight))  # type: ignore[arg-type]
    w = np.asarray(sample_weight, dtype=float)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},) to match X")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight has missing or non-finite values")
    if np.any(w < 0):
        raise ValueError("Negative values in sample_weight are not allowed")
    if n > 0 and not np.any(w > 0):
        raise ValueError("every sample_weight is zero: there is nothing to fit")
    return w


def _design(X: Any, fit_intercept: bool) -> Any:
    """X with a leading column of ones when ``fit_intercept`` (stays sparse if X is)."""
    if not fit_intercept:
        return X
    ones = np.ones((X.shape[0], 1))
    if sp.issparse(X):
        return sp.hstack([sp.csr_matrix(ones), X], format="csr")
    return np.hstack([ones, X])


def _d2(family: Family, y: Array, mu: Array, w: Array | None) -> float:
    """D^2 = 1 - sum w d(y, mu) / sum w d(y, ybar_w): deviance explained on these rows."""
    if y.shape != mu.shape:
        raise ValueError(f"y has {y.shape[0]} rows but X has {mu.shape[0]}")
    w = np.ones_like(y) if w is None else w
    ybar = np.full_like(y, np.average(y, weights=w))
    dev = family.deviance(y, mu, w)
    null_dev = family.deviance(y, ybar, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(1.0 - np.float64(dev) / np.float64(null_dev))


class _GLMBase(BaseEstimator):
    """Shared fitting and prediction; subclasses choose the family and the response."""

    fit_intercept: bool
    tol: float
    max_iter: int

    def _family(self) -> Family:
        raise NotImplementedError

    def _family_or_none(self) -> Family | None:
        try:
            return self._family()
        except (FamilyError, TypeError, ValueError):
            return None

    def _fit_glm(self, X: Any, y: Array, sample_weight: Any, family: Family) -> None:
        """Fit and set ``result_``, ``coef_``, ``intercept_``, ``n_iter_``, ``family_``."""
        names = [str(c) for c in getattr(self, "feature_names_in_", [])]
        names = names or [f"x{j}" for j in range(X.shape[1])]
        if self.fit_intercept:
            names = ["Intercept", *names]
        w = _sample_weight(sample_weight, X.shape[0])
        if w is not None and np.any(w == 0):  # a zero frequency weight: the row is not there
            keep = w > 0
            X, y, w = X[keep], y[keep], w[keep]
        res = glm_fit(
            _design(X, self.fit_intercept),
            y,
            family=family,
            freq_weights=w,
            tol=self.tol,
            max_iter=self.max_iter,
            column_names=names,
            intercept=self.fit_intercept,
        )
        # aliased columns (R's NA) are 0 here so that X @ coef_ + intercept_ predicts
        beta = np.where(res._fit.aliased, 0.0, res._fit.coef)
        self.result_ = res
        self.family_ = res.family
        self.intercept_ = float(beta[0]) if self.fit_intercept else 0.0
        self.coef_ = beta[1:].copy() if self.fit_intercept else beta.copy()
        self.n_iter_ = res.n_iter

    def _linear_predictor(self, X: Any) -> Array:
        """eta = X coef_ + intercept_ for validated new X."""
        check_is_fitted(self, "result_")
        X = validate_data(self, X, accept_sparse=("csr", "csc"), dtype=np.float64, reset=False)
        coef = np.ravel(self.coef_)
        return np.asarray(X @ coef, dtype=float).ravel() + float(np.ravel(self.intercept_)[0])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class GLMRegressor(RegressorMixin, _GLMBase):
    """A generalized linear model fitted by glmx (R's ``glm``), as a regressor.

    Parameters
    ----------
    family : str or glmx.families.Family, default "gaussian"
        ``gaussian``, ``poisson``, ``gamma``, ``inverse_gaussian``, ``negative_binomial``,
        ``tweedie``, ``binomial`` (a proportion response), the quasi families, or a family
        object such as ``glmx.families.tweedie(power=1.5)``.
    link : str, glmx.links.Link or None, default None
        The family's default (canonical) link when None.
    fit_intercept : bool, default True
        Prepend a column of ones (named ``Intercept``) to X.
    tol : float, default 1e-10
        IRLS convergence: |dev - dev_old| / (|dev| + 0.1) < tol (R's ``glm.control``).
    max_iter : int, default 100
        Maximum number of IRLS iterations.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Estimates; aliased (linearly dependent) columns are 0 here and NaN in ``result_``.
    intercept_ : float
        0.0 when ``fit_intercept`` is False.
    n_iter_ : int
        IRLS iterations.
    family_ : glmx.families.Family
        The fitted family (for ``negative_binomial``: with the estimated theta; on
        targets with no overdispersion theta diverges, a ``ConvergenceWarning`` says
        so, and the fit is the Poisson limit, reported at theta = 1e10).
    result_ : glmx.GLMResults
        The full glmx fit: ``summary()``, ``se``, ``confint()``, ``aic``, ``influence()``...
    n_features_in_, feature_names_in_
        As every scikit-learn estimator.

    ``predict`` returns the mean mu = g^-1(X coef_ + intercept_); ``score`` is D^2 (see the
    module docstring); ``sample_weight`` acts as frequency weights.
    """

    def __init__(
        self,
        family: str | Family = "gaussian",
        link: str | Link | None = None,
        fit_intercept: bool = True,
        tol: float = 1e-10,
        max_iter: int = 100,
    ) -> None:
        self.family = family
        self.link = link
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def _family(self) -> Family:
        fam = self.family
        return get_family(copy.deepcopy(fam) if isinstance(fam, Family) else fam, self.link)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GLMRegressor:
        """Fit by IRLS; ``sample_weight`` are frequency weights (case counts)."""
        family = self._family()
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64, y_numeric=True
        )
        self._fit_glm(X, np.asarray(y, dtype=float), sample_weight, family)
        return self

    def predict(self, X: Any) -> Array:
        """The fitted mean mu = g^-1(eta) on the response scale."""
        check_is_fitted(self, "result_")
        return self.family_.link.inverse(self._linear_predictor(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """D^2, the fraction of deviance explained (``d2_tweedie_score`` for the family)."""
        mu = self.predict(X)
        y = np.asarray(y, dtype=float).ravel()
        return _d2(self.family_, y, mu, _sample_weight(sample_weight, y.shape[0]))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        fam = self._family_or_none()
        if fam is not None:  # a family whose support excludes negative y (poisson, gamma...)
            probe = np.array([-1.0])
            bad = fam.invalid_response(probe, np.ones(1))
            tags.target_tags.positive_only = bool(bad is not None and bad[0].any())
        return tags


class GLMClassifier(ClassifierMixin, _GLMBase):
    """Binary classification by a binomial GLM fitted by glmx (R's ``glm``).

    ``classes_[1]`` is the "success": ``predict_proba(X)[:, 1]`` = g^-1(X coef_ +
    intercept_), as in ``LogisticRegression``.

    Parameters
    ----------
    link : str or glmx.links.Link, default "logit"
        ``logit``, ``probit``, ``cloglog``, ``loglog``, ``cauchit`` or ``log``.
    fit_intercept : bool, default True
        Prepend a column of ones (named ``Intercept``) to X.
    tol : float, default 1e-10
        IRLS convergence: |dev - dev_old| / (|dev| + 0.1) < tol (R's ``glm.control``).
    max_iter : int, default 100
        Maximum number of IRLS iterations.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    coef_ : ndarray of shape (1, n_features)
        As scikit-learn's linear classifiers; aliased columns are 0 (NaN in ``result_``).
    intercept_ : ndarray of shape (1,)
    n_iter_, result_, family_, n_features_in_, feature_names_in_
        As for :class:`GLMRegressor`.

    ``decision_function`` is eta - g(1/2), positive exactly when the predicted probability
    exceeds 1/2 (for logit, probit and cauchit, g(1/2) = 0: it is the linear predictor).
    ``score`` is D^2 = 1 - deviance / null deviance, scikit-learn's ``d2_log_loss_score``
    (not accuracy: pass ``scoring="accuracy"`` to model selection tools for that).
    Separable data give infinite estimates: glmx warns (``glmx.SeparationWarning``) and the
    probabilities are numerically 0 or 1.
    """

    def __init__(
        self,
        link: str | Link = "logit",
        fit_intercept: bool = True,
        tol: float = 1e-10,
        max_iter: int = 100,
    ) -> None:
        self.link = link
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def _family(self) -> Family:
        return Binomial(self.link)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GLMClassifier:
        """Fit a binomial GLM to two classes; ``sample_weight`` are frequency weights."""
        family = self._family()
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        self.classes_, y01 = np.unique(y, return_inverse=True)
        w = _sample_weight(sample_weight, X.shape[0])
        present = self.classes_[np.unique(y01 if w is None else y01[w > 0])]
        if present.shape[0] < 2:
            raise ValueError(
                f"GLMClassifier needs 2 classes with positive sample_weight; got 1 class: "
                f"{present.tolist()}"
            )
        self._fit_glm(X, y01.astype(float), w, family)
        self.coef_ = self.coef_.reshape(1, -1)
        self.intercept_ = np.array([self.intercept_])  # type: ignore[assignment]
        return self

    def decision_function(self, X: Any) -> Array:
        """eta - g(1/2): > 0 exactly where ``predict`` gives ``classes_[1]``."""
        check_is_fitted(self, "result_")
        return self._linear_predictor(X) - float(self.family_.link.link(np.array(0.5))[()])

    def predict_proba(self, X: Any) -> Array:
        """Columns P(classes_[0]) and P(classes_[1]) = g^-1(eta)."""
        check_is_fitted(self, "result_")
        p = self.family_.link.inverse(self._linear_predictor(X))
        return np.column_stack([1.0 - p, p])

    def predict_log_proba(self, X: Any) -> Array:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> NDArray[Any]:
        """The class whose probability exceeds 1/2 (``classes_[0]`` at a tie)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """D^2 = 1 - deviance / null deviance on these rows (``d2_log_loss_score``)."""
        check_is_fitted(self, "result_")
        y = np.asarray(y).ravel()
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise DataError(
                f"y has {int(unknown.sum())} label(s) not among classes_ "
                f"{self.classes_.tolist()}, first: {y[unknown][0]!r}"
            )
        y01 = (y == self.classes_[1]).astype(float)
        p = self.predict_proba(X)[:, 1]
        return _d2(self.family_, y01, p, _sample_weight(sample_weight, y.shape[0]))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


__all__ = ["GLMRegressor", "GLMClassifier"]

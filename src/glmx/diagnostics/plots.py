"""Diagnostic plots of a fitted GLM: R's four ``plot.lm`` panels adapted to GLMs.

1. deviance residuals against the linear predictor, with a lowess smoother;
2. a normal QQ plot of randomized quantile residuals (Dunn & Smyth 1996), which are
   N(0, 1) under a correct model for every family, so the reference is the line y = x;
3. scale-location: sqrt(|standardized deviance residual|) against the linear predictor;
4. standardized Pearson residuals against leverage, with contours of Cook's distance
   D = r^2 h / (p (1 - h)) at 0.5 and 1 (R's ``plot.lm`` panel 5).

matplotlib is an optional dependency: it is imported inside the functions, and figures
are built on the Agg canvas (no GUI, no pyplot state), so they can be saved anywhere and
shown in notebooks.  Numbers come from the results and ``glmx.diagnostics``; only the
smoother is computed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from glmx.errors import GlmxError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]

_POINT: dict[str, Any] = {
    "marker": "o",
    "ls": "none",
    "ms": 4,
    "mfc": "none",
    "mec": "0.25",
    "mew": 0.8,
}
_SMOOTH: dict[str, Any] = {"color": "#d62728", "lw": 1.6}
_REFERENCE: dict[str, Any] = {"color": "0.55", "lw": 0.9, "ls": "--"}
_BLOCK = 2**22  # evaluation points x rows per block of the smoother
_LOWESS_MAX_ROWS = 10_000  # larger data are smoothed through a seeded random subsample


def lowess(
    x: Array,
    y: Array,
    frac: float = 2 / 3,
    iters: int = 3,
    n_eval: int = 100,
    max_rows: int = _LOWESS_MAX_ROWS,
) -> tuple[Array, Array]:
    """Robust locally linear smoother, R's ``lowess(x, y, f = frac, iter = iters)``.

    At each evaluation point g: a weighted straight line through the k = floor(frac n)
    nearest rows, tricube weights (1 - (|x - g|/h)^3)^3 with h the k-th distance; then
    ``iters`` robustness passes, the weights multiplied by the bisquare
    (1 - (e / 6 median|e|)^2)^2 of the residuals e; R's cut-offs at 0.001 and 0.999 of
    h and of 6 median|e|.  Evaluated at the distinct x when there are at most ``n_eval``
    of them (then equal to R's with ``delta = 0``), else at ``n_eval`` quantiles of x
    and interpolated between them; blocks of grid x rows, never rows x rows.  Beyond
    ``max_rows`` rows, the smooth of a random subsample of that size (seed 0).
    Returns (grid, smooth).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() > max_rows:  # the smooth of a large random subsample, for speed
        pick = np.random.default_rng(0).choice(np.flatnonzero(keep), max_rows, replace=False)
        keep = np.zeros_like(keep)
        keep[pick] = True
    order = np.argsort(x[keep], kind="stable")
    x, y = x[keep][order], y[keep][order]
    n = x.size
    if n == 0:
        return np.empty(0), np.empty(0)
    grid = np.unique(x)
    if grid.size > n_eval:
        grid = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_eval)))
    k = max(2, min(n, int(frac * n + 1e-7)))
    x_range = float(x.max() - x.min())
    robust = np.ones(n)
    smooth = np.zeros(grid.size)
    for it in range(iters + 1):
        step = max(1, _BLOCK // n)
        for start in range(0, grid.size, step):
            g = grid[start : start + step, None]
            d = np.abs(x[None, :] - g)
            h = np.partition(d, k - 1, axis=1)[:, k - 1 : k]  # k-th nearest distance
            with np.errstate(divide="ignore", invalid="ignore"):
                tri = np.where(d <= 0.001 * h, 1.0, (1.0 - (d / h) ** 3) ** 3)
            w = np.where(d <= 0.999 * h, tri, 0.0) * robust
            sw = w.sum(1)
            ok = sw > 0
            w = w / np.where(ok, sw, 1.0)[:, None]
            xbar = w @ x  # the weighted line at g: ybar + slope (g - xbar)
            c = w @ x**2 - xbar**2
            tilt = (h[:, 0] > 0) & (np.sqrt(np.maximum(c, 0.0)) > 0.001 * x_range)
            b = np.where(tilt, (g[:, 0] - xbar) / np.where(tilt, c, 1.0), 0.0)
            fit = w @ y + b * (w @ (x * y) - xbar * (w @ y))
            smooth[start : start + step] = np.where(ok, fit, np.interp(g[:, 0], x, y))
        if it == iters:
            break
        e = np.abs(y - np.interp(x, grid, smooth))
        cmad = 6.0 * np.median(e)
        if cmad < 1e-7 * np.mean(e) or cmad == 0:
            break
        bisq = (1.0 - (e / cmad) ** 2) ** 2
        robust = np.where(e <= 0.001 * cmad, 1.0, np.where(e <= 0.999 * cmad, bisq, 0.0))
    return grid, smooth


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure on the Agg canvas, with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path | None) -> None:
    """Save to ``path`` (the format from its suffix; PNG at 100 dpi) if one is given."""
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        fig.savefig(path, dpi=100)


def row_labels(fit: GLMResults) -> NDArray[Any]:
    """Labels of the rows used: the data's row labels when the fit records them,
    otherwise 0-based positions among the rows used."""
    labels = getattr(fit._fit, "row_labels", None)
    if labels is not None and len(labels) == fit._fit.y.shape[0]:
        return np.asarray(labels, dtype=object)
    return np.arange(fit._fit.y.shape[0])


def _smooth_line(ax: Axes, x: Array, y: Array, smoother: bool) -> None:
    if smoother and np.sum(np.isfinite(x) & np.isfinite(y)) >= 3:
        gx, gy = lowess(x, y)
        ax.plot(gx, gy, **_SMOOTH, zorder=3)


def label_points(ax: Axes, x: Array, y: Array, score: Array, labels: NDArray[Any], n: int) -> None:
    """Label the n points of largest finite ``score``.  Call it once the panel's limits
    are set: each label sits on the side of its point that faces the middle of the
    panel, and labels that would overlap an earlier one are moved away vertically."""
    if n <= 0:
        return
    ok = np.flatnonzero(np.isfinite(score) & np.isfinite(x) & np.isfinite(y))
    if ok.size == 0:
        return
    top = ok[np.argsort(-score[ok], kind="stable")[:n]]
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    dpi = ax.figure.dpi if ax.figure is not None else 100.0
    width, height = ax.bbox.width * 72.0 / dpi, ax.bbox.height * 72.0 / dpi  # in points
    placed: list[tuple[float, float]] = []  # label anchors in points from the corner
    for i in top:
        px = (x[i] - x0) / (x1 - x0) * width if x1 > x0 else 0.0
        py = (y[i] - y0) / (y1 - y0) * height if y1 > y0 else 0.0
        right = px <= 0.5 * width
        down = py > 0.5 * height  # crowded labels move towards the middle
        dy = 2.0
        while any(abs(qx - px) < 40 and abs(qy - (py + dy)) < 10 for qx, qy in placed):
            dy += -10.0 if down else 10.0
        placed.append((px, py + dy))
        ax.annotate(
            str(labels[i]),
            (x[i], y[i]),
            xytext=(4 if right else -4, dy),
            textcoords="offset points",
            ha="left" if right else "right",
            va="bottom",
            fontsize=8,
            color="0.15",
        )


def _ppoints(n: int) -> Array:
    """R's ``ppoints``: (i - a) / (n + 1 - 2a), a = 3/8 for n <= 10, else 1/2."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return np.asarray((np.arange(1, n + 1) - a) / (n + 1 - 2 * a), dtype=float)


def _qq_residuals(fit: GLMResults, seed: int | None) -> tuple[Array, str]:
    """Quantile residuals, or standardized deviance residuals for families without a
    distribution function (quasi families, tweedie p = 1 or p > 2 but 3)."""
    try:
        return fit.residuals("quantile", seed=seed), "Quantile residuals"
    except GlmxError:
        from glmx.diagnostics.influence import rstandard

        return rstandard(fit, "deviance"), "Std. deviance residuals"


def diagnostic_plots(
    fit: GLMResults,
    path: str | Path | None = None,
    *,
    seed: int | None = 0,
    label_n: int = 3,
    smoother: bool = True,
) -> Figure:
    """The four diagnostic panels of a GLM (see the module docstring), as a matplotlib
    Figure; saved to ``path`` if given.  ``seed`` seeds the quantile residuals of discrete
    families; the ``label_n`` most extreme rows of each panel are labelled (by row
    label, or by 0-based position among the rows used); ``smoother`` draws lowess lines.
    """
    from glmx.diagnostics.influence import cooks_distance, hat_values, rstandard

    f = fit._fit
    used = f.weights > 0  # rows with prior weight 0 take no part in the fit
    labels = row_labels(fit)[used]
    eta = f.eta[used]
    dev = fit.residuals("deviance")[used]
    qres, qlabel = _qq_residuals(fit, seed)
    qres = qres[used]
    std_dev = rstandard(fit, "deviance")[used]
    std_pearson = rstandard(fit, "pearson")[used]
    hat = hat_values(fit)[used]
    cooks = cooks_distance(fit)[used]

    fig = new_figure(10.0, 8.5)
    ax1, ax2, ax3, ax4 = fig.subplots(2, 2).ravel()
    for ax in (ax1, ax2, ax3):
        ax.margins(x=0.05, y=0.1)  # room for the labels of the extreme points
    formula = f.terms.formula if f.terms is not None else "glm_fit"
    fig.suptitle(f"{fit.family.name}({fit.link}):  {formula}", fontsize=11)

    # 1. residuals vs linear predictor
    ax1.plot(eta, dev, **_POINT, gid="points")
    ax1.axhline(0.0, **_REFERENCE)
    _smooth_line(ax1, eta, dev, smoother)
    label_points(ax1, eta, dev, np.abs(dev), labels, label_n)
    ax1.set(title="Residuals vs Linear predictor", xlabel="Linear predictor")
    ax1.set_ylabel("Deviance residuals")

    # 2. normal QQ of quantile residuals against y = x
    finite = np.isfinite(qres)
    order = np.flatnonzero(finite)[np.argsort(qres[finite], kind="stable")]
    theo = np.full(qres.shape, np.nan)
    theo[order] = stats.norm.ppf(_ppoints(order.size))
    ax2.plot(theo[order], qres[order], **_POINT, gid="points")
    if order.size:
        lim = np.array([np.nanmin(theo), np.nanmax(theo)])
        if qlabel == "Quantile residuals":
            ax2.plot(lim, lim, **_REFERENCE)  # N(0, 1) under the model
        else:  # R's qqline: through the quartiles
            q1, q3 = np.quantile(qres[order], [0.25, 0.75])
            slope = (q3 - q1) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
            ax2.plot(lim, q1 + slope * (lim - stats.norm.ppf(0.25)), **_REFERENCE)
    label_points(ax2, theo, qres, np.abs(qres), labels, label_n)
    ax2.set(title="Normal Q-Q", xlabel="Theoretical quantiles", ylabel=qlabel)

    # 3. scale-location
    root = np.sqrt(np.abs(std_dev))
    ax3.plot(eta, root, **_POINT, gid="points")
    _smooth_line(ax3, eta, root, smoother)
    ax3.set(title="Scale-Location", xlabel="Linear predictor")
    ax3.set_ylabel(r"$\sqrt{|\mathrm{Std.\ deviance\ residuals}|}$")
    ax3.set_ylim(bottom=0.0, top=1.1 * float(np.nanmax(root, initial=0.0)) + 0.05)
    label_points(ax3, eta, root, root, labels, label_n)

    # 4. residuals vs leverage, Cook's distance contours
    _leverage_panel(ax4, hat, std_pearson, cooks, labels, fit.rank, label_n, smoother)

    save_figure(fig, path)
    return fig


def _leverage_panel(
    ax: Axes,
    hat: Array,
    r: Array,
    cooks: Array,
    labels: NDArray[Any],
    rank: int,
    label_n: int,
    smoother: bool,
) -> None:
    ok = np.isfinite(r) & (hat < 1.0)
    ax.plot(hat[ok], r[ok], **_POINT, gid="points")
    ax.axhline(0.0, **_REFERENCE)
    _smooth_line(ax, hat[ok], r[ok], smoother)
    ax.set(title="Residuals vs Leverage", xlabel="Leverage", ylabel="Std. Pearson residuals")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    if not ok.any():
        return
    h_max = float(np.max(hat[ok]))
    x_hi = 1.08 * h_max if h_max > 0 else 1.0
    ax.set_xlim(0.0, x_hi)
    r_lo, r_hi = float(np.min(r[ok])), float(np.max(r[ok]))
    pad = 0.1 * max(r_hi - r_lo, 0.5)
    y_lo, y_hi = min(r_lo, 0.0) - pad, max(r_hi, 0.0) + pad  # R's extendrange, with 0
    ax.set_ylim(y_lo, y_hi)
    label_points(ax, hat, r, np.where(ok, cooks, np.nan), labels, label_n)
    # Cook's distance D: the standardized residual r = +-sqrt(D p (1 - h) / h)
    hh = np.linspace(max(x_hi / 200.0, 1e-6), x_hi, 200)
    for level in (0.5, 1.0):
        bound = np.sqrt(level * rank * (1.0 - hh) / hh)
        # the level's label where the curve enters the panel (curves that enter at
        # different leverages do not crowd their labels), else at its right end
        inside = np.flatnonzero(bound < 0.9 * y_hi)
        at = inside[0] if 0 < inside.size and inside[0] > 0 else hh.size - 1
        for sign in (1.0, -1.0):
            ax.plot(hh, sign * bound, color="#d62728", lw=0.9, ls=":", zorder=1)
            if sign > 0 and bound[at] < 0.93 * y_hi:  # one label per level is enough
                ax.annotate(
                    f"{level:g}",
                    (hh[at], sign * bound[at]),
                    xytext=(3 if at < hh.size - 1 else -2, 0),
                    textcoords="offset points",
                    ha="left" if at < hh.size - 1 else "right",
                    va="bottom",
                    fontsize=8,
                    color="#d62728",
                )
    visible = np.sqrt(0.5 * rank * (1.0 - x_hi) / x_hi) < max(y_hi, -y_lo)
    if visible:  # a legend only for contours that reach into the panel
        ax.plot([], [], color="#d62728", lw=0.9, ls=":", label="Cook's distance")
        ax.legend(loc="best", fontsize=8, frameon=False)


def save_demo_plots(out_dir: str | Path) -> list[Path]:
    """Fit two classic models on the bundled data and save their diagnostic PNGs:
    car insurance claims (poisson, log link, offset log(holders)) and blood clotting
    times (Gamma, inverse link).  Returns the paths written."""
    import glmx
    from glmx.datasets import load

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = [
        (
            "insurance_poisson_diagnostics.png",
            "Claims ~ District + Group + Age + offset(log_holders)",
            "insurance",
            "poisson",
        ),
        ("clotting_gamma_diagnostics.png", "lot1 ~ log(u)", "clotting", "gamma"),
    ]
    paths = []
    for name, formula, data, family in models:
        fit = glmx.glm(formula, load(data), family=family)
        path = out / name
        diagnostic_plots(fit, path)
        paths.append(path)
    return paths

"""R-style text (and HTML) summary of a fitted GLM, laid out as R's ``summary.glm``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

from glmx.inference.tests import dispersion_note
from glmx.results.rformat import align, format_column, format_pval, signif_stars

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults


class GLMSummary:
    """``str()`` reads like R's ``summary.glm``; ``_repr_html_`` renders in notebooks."""

    def __init__(self, fit: GLMResults) -> None:
        self.fit = fit

    @property
    def coef_table(self):  # noqa: ANN201 - a pandas DataFrame
        return self.fit.coef_table

    def _residual_lines(self) -> list[str]:
        r = self.fit.residuals("deviance")
        if self.fit.df_resid > 5:
            with np.errstate(invalid="ignore"):  # infinite residuals: inf, NaN
                q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
            head = ["Min", "1Q", "Median", "3Q", "Max"]
            vals = format_column(q, 4)
        else:
            head = [str(i + 1) for i in range(len(r))]
            vals = format_column(r, 4)
        width = max(max(map(len, head)), max(map(len, vals)))
        w = [width] * len(head)  # a named vector prints in one common width
        lines = []
        per_line = max(1, 80 // (max(w) + 2))
        for start in range(0, len(head), per_line):
            sl = slice(start, start + per_line)
            lines.append("".join(h.rjust(k) + "  " for h, k in zip(head[sl], w[sl])))
            lines.append("".join(v.rjust(k) + "  " for v, k in zip(vals[sl], w[sl])))
        return lines

    def _coef_lines(self) -> list[str]:
        fit = self.fit
        tab = fit.coef_table
        kind = "z" if (fit.family.fixed_dispersion or fit.cov_type != "model") else "t"
        # R's printCoefmat formats estimates and standard errors as one block
        k = len(tab)
        both = format_column(np.concatenate([tab["estimate"], tab["std_error"]]), 4)
        est, se = both[:k], both[k:]
        stat = format_column(np.round(tab["statistic"].to_numpy(dtype=float), 3), 4)
        pv = format_pval(tab["p_value"], 3)
        stars = signif_stars(tab["p_value"])
        rows = [["", "Estimate", "Std. Error", f"{kind} value", f"Pr(>|{kind}|)", ""]]
        for i, name in enumerate(tab.index):
            rows.append([str(name), est[i], se[i], stat[i], pv[i], stars[i]])
        return align(rows)

    def __str__(self) -> str:
        fit = self.fit
        fam = fit.family
        lines = ["", "Call:", fit._fit.call or "glmx.glm_fit(...)", "", "Deviance Residuals: "]
        lines += self._residual_lines()
        lines += [""]
        n_alias = int(fit.aliased.sum())
        if fit.aliased.size == 0:  # y ~ 0: R's summary.glm says so, without a table
            lines += ["No Coefficients", ""]
        else:
            if n_alias:
                lines.append(f"Coefficients: ({n_alias} not defined because of singularities)")
            else:
                lines.append("Coefficients:")
            lines += self._coef_lines()
            if fit.cov_type != "model":
                lines.append(f"(Standard errors: robust sandwich, {fit.cov_type})")
            if fit._fit.method == "firth":
                lines.append(
                    "Type of estimator: AS_mean (mean bias-reducing adjusted score equations)"
                )
            lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1", ""]
        if fam.fixed_dispersion:
            lines.append(f"(Dispersion parameter for {fam.name} family taken to be 1)")
        else:
            lines.append(
                f"(Dispersion parameter for {fam.name} family taken to be {fit.dispersion:.7g})"
            )
        lines += dispersion_note(fit)  # glmx's addition: the Pearson overdispersion test
        lines.append("")
        nd = format_column([fit.null_deviance, fit.deviance], 5)
        w = max(map(len, nd))
        lines.append(f"    Null deviance: {nd[0].rjust(w)}  on {fit.df_null:g}  degrees of freedom")
        lines.append(
            f"Residual deviance: {nd[1].rjust(w)}  on {fit.df_resid:g}  degrees of freedom"
        )
        if fit.n_dropped:
            lines.append(f"  ({fit.n_dropped} observation(s) deleted due to missingness)")
        aic = fit.aic
        lines.append(f"AIC: {format_column([aic], 5)[0] if np.isfinite(aic) else 'NA'}")
        lines += ["", f"Number of Fisher Scoring iterations: {fit.n_iter}", ""]
        theta = getattr(fam, "theta", None)
        if theta is not None:
            # as MASS's print.summary.negbin
            lines += ["", f"              Theta:  {format_column([theta], 4)[0]} "]
            if fit._fit.theta_se is not None:
                lines.append(f"          Std. Err.:  {format_column([fit._fit.theta_se], 3)[0]} ")
            lines += ["", f" 2 x log-likelihood:  {2 * fit.loglik:.3f} "]
        if not fit.converged:
            lines.append("Warning: the fit did not converge.")
        recorded = getattr(fit._fit, "warnings", ())
        if recorded:
            lines += ["", "Warnings during the fit:"] + [f"  {w}" for w in recorded]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        fit = self.fit
        tab = fit.coef_table
        kind = "z" if (fit.family.fixed_dispersion or fit.cov_type != "model") else "t"
        head = "".join(
            f"<th>{h}</th>"
            for h in ["", "Estimate", "Std. Error", f"{kind} value", f"Pr(&gt;|{kind}|)", ""]
        )
        body = []
        both = format_column(np.concatenate([tab["estimate"], tab["std_error"]]), 4)
        est, se = both[: len(tab)], both[len(tab) :]
        stat = format_column(np.round(tab["statistic"].to_numpy(dtype=float), 3), 4)
        pv, stars = format_pval(tab["p_value"], 3), signif_stars(tab["p_value"])
        for i, name in enumerate(tab.index):
            cells = [html.escape(str(name)), est[i], se[i], stat[i], html.escape(pv[i]), stars[i]]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        fam = fit.family
        stats = (
            f"<p>{html.escape(fam.name)} family, {html.escape(fam.link.name)} link; "
            f"dispersion {fit.dispersion:.6g}; null deviance {fit.null_deviance:.6g} on "
            f"{fit.df_null:g} df; residual deviance {fit.deviance:.6g} on {fit.df_resid:g} df; "
            f"AIC {fit.aic:.6g}; {fit.n_iter} Fisher scoring iterations.</p>"
        )
        for w in getattr(fit._fit, "warnings", ()):
            stats += f"<p>Warning: {html.escape(w)}</p>"
        return (
            f"<div><p><code>{html.escape(fit._fit.call)}</code></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{stats}</div>"
        )

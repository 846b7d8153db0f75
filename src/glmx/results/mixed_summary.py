"""Text (and HTML) summary of a mixed model, laid out as lme4's ``summary.merMod``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

from glmx.results.rformat import align, format_column, format_pval, signif_stars

if TYPE_CHECKING:
    from glmx.results.mixed import MixedResults


class MixedSummary:
    """``str()`` reads like lme4's ``summary(fit)``; ``_repr_html_`` for notebooks."""

    def __init__(self, fit: MixedResults) -> None:
        self.fit = fit

    def _title(self) -> list[str]:
        fit = self.fit
        if fit.is_lmm:
            how = "REML" if fit.reml else "maximum likelihood"
            lines = [f"Linear mixed model fit by {how}"]
        else:
            approx = (
                "Laplace Approximation"
                if fit.nagq == 1
                else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nagq}"
            )
            lines = [
                f"Generalized linear mixed model fit by maximum likelihood ({approx})",
                f" Family: {fit.family.name}  ( {fit.family.link.name} )",
            ]
        return lines + [f"Formula: {fit.formula}", ""]

    def _criteria(self) -> list[str]:
        fit = self.fit
        if fit.reml:
            crit = fit.reml_criterion
            return [f"REML criterion at convergence: {crit:.1f}", ""]
        head = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}"]
        vals += [f"{-2 * fit.loglik:.1f}", str(fit.df_resid)]
        w = max(map(len, head + vals))  # R prints a named vector in one common width
        return [
            " ".join(h.rjust(w) for h in head) + " ",
            " ".join(v.rjust(w) for v in vals) + " ",
            "",
        ]

    def _scaled_residuals(self) -> list[str]:
        r = self.fit.residuals("pearson") / self.fit.sigma
        with np.errstate(invalid="ignore"):  # infinite residuals (separation): inf, NaN
            q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
        # lme4: zapsmall(quantiles, 5), printed with 4 significant digits
        finite = q[np.isfinite(q)]
        top = float(np.max(np.abs(finite), initial=0.0))
        q = np.round(q, max(0, 5 - int(np.ceil(np.log10(top)))) if top > 0 else 5)
        head = ["Min", "1Q", "Median", "3Q", "Max"]
        vals = format_column(q, 4)
        w = max(max(map(len, head)), max(map(len, vals)))
        return [
            "Scaled residuals: ",
            "".join(h.rjust(w) + " " for h in head),
            "".join(v.rjust(w) + " " for v in vals),
            "",
        ]

    def random_effects_rows(self) -> list[list[str]]:
        """Groups, Name, Variance, Std.Dev. and the correlations of each term's columns."""
        vc = self.fit.varcorr
        variances = vc[vc["var2"].isna()]
        corr = vc[vc["var2"].notna()]
        var_txt = format_column(variances["vcov"].to_numpy(dtype=float), 4)
        sd_txt = format_column(variances["sdcor"].to_numpy(dtype=float), 4)
        has_corr = len(corr) > 0
        rows = [["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])]
        previous = None
        seen: dict[str, list[str]] = {}
        for i, (_, row) in enumerate(variances.iterrows()):
            grp = str(row["grp"])
            name = "" if row["var1"] is None or row["var1"] != row["var1"] else str(row["var1"])
            cells = [grp if grp != previous else "", name, var_txt[i], sd_txt[i]]
            if has_corr:
                earlier = seen.get(grp, [])
                rc = [
                    float(r["sdcor"])
                    for _, r in corr[corr["grp"] == grp].iterrows()
                    if r["var2"] == name and r["var1"] in earlier
                ]
                cells.append(" ".join(f"{c:5.2f}" for c in rc))
            seen.setdefault(grp, []).append(name)
            rows.append(cells)
            previous = grp
        return rows

    def _random_effects(self) -> list[str]:
        fit = self.fit
        lines = ["Random effects:"]
        lines += [" " + line.rstrip() for line in align(self.random_effects_rows(), n_left=2)]
        groups = ", ".join(f"{g}, {k}" for g, k in fit.n_groups.items())
        lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
        return lines + [""]

    def _fixed_effects(self) -> list[str]:
        fit = self.fit
        tab = fit.coef_table
        k = len(tab)
        both = format_column(np.concatenate([tab["estimate"], tab["std_error"]]), 4)
        est, se = both[:k], both[k:]
        stat = format_column(np.round(tab["statistic"].to_numpy(dtype=float), 3), 4)
        kind = "t" if fit.is_lmm else "z"
        header = ["", "Estimate", "Std. Error", f"{kind} value"]
        if fit.is_lmm:
            rows = [header] + [[str(n), est[i], se[i], stat[i]] for i, n in enumerate(tab.index)]
            return ["Fixed effects:", *align(rows)]
        pv, stars = format_pval(tab["p_value"], 3), signif_stars(tab["p_value"])
        rows = [header + [f"Pr(>|{kind}|)", ""]]
        rows += [[str(n), est[i], se[i], stat[i], pv[i], stars[i]] for i, n in enumerate(tab.index)]
        return ["Fixed effects:", *align(rows), "---", _SIGNIF]

    def _correlation(self) -> list[str]:
        v = self.fit.vcov.to_numpy()
        names = list(self.fit.vcov.index)
        if len(names) < 2:
            return []
        sd = np.sqrt(np.diag(v))
        with np.errstate(divide="ignore", invalid="ignore"):  # a variance of 0 or inf: NaN
            corr = v / np.outer(sd, sd)
        short = [_abbreviate(n) for n in names]
        rows = [[""] + short[:-1]]
        for i in range(1, len(names)):
            rows.append(
                [short[i]] + [f"{corr[i, j]:.3f}" for j in range(i)] + [""] * (len(names) - 1 - i)
            )
        return ["", "Correlation of Fixed Effects:", *align(rows)]

    def __str__(self) -> str:
        fit = self.fit
        lines = self._title() + self._criteria() + self._scaled_residuals()
        lines += self._random_effects() + self._fixed_effects() + self._correlation()
        lines += self._optimizer()
        for msg in fit.warnings:
            lines.append(f"Warning: {msg}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _optimizer(self) -> list[str]:
        """lme4's closing lines: a singular fit said plainly, naming what sits on the
        boundary, and the starts the optimizer tried when there were several."""
        fit = self.fit
        info = fit.optimizer_info
        lines: list[str] = []
        method = f" ({info.method})" if info is not None else ""
        if fit.singular:
            where = ", ".join(fit.singular_parameters) or "a variance component"
            lines.append(
                f"optimizer{method}: boundary (singular) fit: {where}; "
                "see 'Singular fits' in docs/mixed-models.md"
            )
        if info is not None and len(info.attempts) > 1:
            best = min(a.objective for a in info.attempts)
            tried = "; ".join(
                f"{a.start}: {a.objective:.4f}{' (best)' if a.objective == best else ''}"
                for a in info.attempts
            )
            lines.append(f"optimizer starts tried (objective): {tried}")
        return lines

    def _repr_html_(self) -> str:
        fit = self.fit
        tab = fit.coef_table
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *tab.columns])
        body = "".join(
            "<tr><td>"
            + html.escape(str(name))
            + "</td>"
            + "".join(f"<td>{v:.6g}</td>" for v in row.to_numpy(dtype=float))
            + "</tr>"
            for name, row in tab.iterrows()
        )
        re_rows = self.random_effects_rows()
        re_head = "".join(f"<th>{html.escape(h)}</th>" for h in re_rows[0])
        re_body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in re_rows[1:]
        )
        crit = (
            f"REML criterion {fit.reml_criterion:.2f}"
            if fit.reml
            else f"logLik {fit.loglik:.2f}, AIC {fit.aic:.2f}, BIC {fit.bic:.2f}"
        )
        return (
            f"<p><code>{html.escape(fit.formula)}</code> ({html.escape(fit.family.name)}, "
            f"{html.escape(fit.family.link.name)} link); {fit.nobs} observations; {crit}</p>"
            f"<table><tr>{re_head}</tr>{re_body}</table>"
            f"<table><tr>{head}</tr>{body}</table>"
        )


_SIGNIF = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def _abbreviate(name: str, width: int = 6) -> str:
    """A short column label for the correlation table, as R's ``abbreviate``: drop lower
    case vowels from the end, then lower case letters, then cut."""
    if name == "(Intercept)":
        return "(Intr)"
    chars = [c for c in name if c.isalnum() or c in "._"]
    for drop in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > width and i > 0:
            if chars[i] in drop:
                del chars[i]
            i -= 1
    return "".join(chars[:width])

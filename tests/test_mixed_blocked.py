"""The blocked Cholesky factor against a dense reference, and its cost per evaluation.

For random crossed, nested and partially crossed designs with scalar and vector terms,
the factor of ``M = [Z Lambda, X, y]' W [Z Lambda, X, y] + diag(I_q, 0)`` must give the
dense answers: log|Lambda'Z'WZ Lambda + I|, log|R_X|^2, the penalized residual sum of
squares r2, beta and u (the solution of the penalized least squares problem), entries of
A^-1 and solves with the bordered system.  An LMM evaluation must not touch the rows.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

import glmx.mixed.structure as structure_module
from glmx.families import get_family
from glmx.mixed.blocked import BlockedFactor
from glmx.mixed.lmm import LinearMixedModel
from glmx.mixed.problem import Problem, build_problem

DENSE_TAIL_MAX = structure_module.DENSE_TAIL_MAX  # the default


@pytest.fixture(autouse=True)
def staged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The designs here are small enough to be factored as one dense block; the tests
    make them staged (sparse blocks), unless they set the limit again."""
    monkeypatch.setattr(structure_module, "DENSE_TAIL_MAX", 0)


def design(kind: str, seed: int, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    if kind == "crossed":
        a, b = rng.integers(0, 17, n), rng.integers(0, 9, n)
        c = rng.integers(0, 4, n)
    elif kind == "nested":  # class in school in district
        a = rng.integers(0, 30, n)
        b, c = a // 3, a // 15
    else:  # partially crossed: b mostly within blocks of a, some rows anywhere
        a = rng.integers(0, 20, n)
        b = np.where(
            rng.random(n) < 0.85, a // 4 * 2 + rng.integers(0, 2, n), rng.integers(0, 10, n)
        )
        c = rng.integers(0, 3, n)
    y = 1 + 0.5 * x + rng.standard_normal(30)[a] + rng.standard_normal(10)[b % 10]
    y = y + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "c": c, "w": 0.5 + rng.random(n)})


FORMULAS = [
    "y ~ x + (1 | a) + (1 | b)",
    "y ~ x + (1 + x | a) + (1 | b)",
    "y ~ x + (1 | a) + (1 + x | b)",
    "y ~ x + (1 | a) + (1 | b) + (1 | c)",
    "y ~ x + (x | a) + (1 | b) + (1 | c)",
]


def problem(formula: str, kind: str, seed: int) -> Problem:
    return build_problem(formula, design(kind, seed), get_family("gaussian"), "w", None, True)


def random_theta(prob: Problem, rng: np.random.Generator) -> np.ndarray:
    rt = prob.structure.reterms
    theta = np.where(
        np.isfinite(rt.lower), 0.2 + rng.random(rt.n_theta), rng.normal(0, 0.4, rt.n_theta)
    )
    return np.asarray(theta)


def dense_reference(prob: Problem, theta: np.ndarray) -> dict[str, Any]:
    rt = prob.structure.reterms
    Z = sp.hstack([t.Z() for t in rt.terms]).toarray()
    Lam = sla.block_diag(*[np.kron(np.eye(t.n_levels), T) for t, T in zip(rt.terms, rt.Ts(theta))])
    ZL = Z @ Lam
    w = prob.pw
    X, y = prob.X, prob.y
    q = ZL.shape[1]
    A = ZL.T @ (w[:, None] * ZL) + np.eye(q)
    M = np.block([[A, ZL.T @ (w[:, None] * X)], [X.T @ (w[:, None] * ZL), X.T @ (w[:, None] * X)]])
    rhs = np.concatenate([ZL.T @ (w * y), X.T @ (w * y)])
    sol = np.linalg.solve(M, rhs)
    u, beta = sol[:q], sol[q:]
    resid = y - X @ beta - ZL @ u
    r2 = float(resid @ (w * resid) + u @ u)
    # log|R_X|^2 = log|M| - log|A|
    logdet_A = float(np.linalg.slogdet(A)[1])
    return {
        "logdet_L": logdet_A,
        "logdet_RX": float(np.linalg.slogdet(M)[1]) - logdet_A,
        "r2": r2,
        "u": u,
        "beta": beta,
        "Ainv": np.linalg.inv(A),
        "M": M,
    }


CASES = [
    (f, kind, seed)
    for f in FORMULAS
    for kind in ("crossed", "nested", "partial")
    for seed in (1, 2)
]


@pytest.mark.parametrize("all_tail", [False, True])
@pytest.mark.parametrize("formula, kind, seed", CASES)
def test_factor_matches_dense_reference(
    formula: str, kind: str, seed: int, all_tail: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged, and as one dense block (a small model's layout)."""
    if all_tail:
        monkeypatch.setattr(structure_module, "DENSE_TAIL_MAX", 10**6)
    prob = problem(formula, kind, seed)
    assert (prob.structure.n_stages == 0) == all_tail
    rng = np.random.default_rng(seed + 100)
    s = prob.structure
    gram = s.gram(prob.pw, np.vstack([prob.X.T, prob.y]))
    for _ in range(2):
        theta = random_theta(prob, rng)
        f = BlockedFactor(s, theta, gram)
        ref = dense_reference(prob, theta)
        assert f.logdet_L == pytest.approx(ref["logdet_L"], rel=1e-11, abs=1e-10)
        assert f.logdet_RX == pytest.approx(ref["logdet_RX"], rel=1e-9, abs=1e-9)
        assert f.r2 == pytest.approx(ref["r2"], rel=1e-10)
        u, beta = f.solve()
        np.testing.assert_allclose(beta, ref["beta"], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(u, ref["u"], rtol=1e-9, atol=1e-10)
        q = s.reterms.q
        ii, jj = np.meshgrid(np.arange(q), np.arange(q), indexing="ij")
        np.testing.assert_allclose(f.inverse_entries(ii, jj), ref["Ainv"], rtol=1e-9, atol=1e-12)
        b = rng.standard_normal(ref["M"].shape[0])
        np.testing.assert_allclose(
            f.solve_system(b), np.linalg.solve(ref["M"], b), rtol=1e-8, atol=1e-10
        )
        np.testing.assert_allclose(
            f.fixed_cov_unscaled(), np.linalg.inv(ref["M"])[q:, q:], rtol=1e-9, atol=1e-12
        )


def test_random_effects_only_solve() -> None:
    """A factor without coefficient columns (PIRLS over u alone) solves A z = b."""
    prob = problem("y ~ x + (1 + x | a) + (1 | b)", "partial", 3)
    s = prob.structure
    theta = random_theta(prob, np.random.default_rng(3))
    f = BlockedFactor(s, theta, s.gram(prob.pw, prob.y[None, :]))
    ref = dense_reference(prob, theta)
    b = np.random.default_rng(4).standard_normal(s.reterms.q)
    np.testing.assert_allclose(f.solve_system(b), ref["Ainv"] @ b, rtol=1e-9, atol=1e-12)
    assert f.n_coef == 0


@pytest.mark.parametrize(
    "formula, kind, stages, kinds",
    [
        ("y ~ x + (1 | a) + (1 | b)", "crossed", 1, ["diagonal", "sparse", "dense"]),
        (
            "y ~ x + (1 | a) + (1 | b) + (1 | c)",
            "nested",
            3,
            ["diagonal", "sparse", "sparse", "diagonal", "sparse", "diagonal"],
        ),
        ("y ~ x + (1 + x | a) + (1 | b)", "nested", 2, ["block-diagonal", "sparse", "diagonal"]),
        ("y ~ x + (1 + x | a) + (1 | b)", "partial", 1, ["block-diagonal", "sparse", "dense"]),
    ],
)
def test_block_types_and_fill_in(formula: str, kind: str, stages: int, kinds: list[str]) -> None:
    s = problem(formula, kind, 1).structure
    assert s.n_stages == stages
    blocks = s.blocks(p=2)
    assert [b.kind for b in blocks if b.rows != "X"][: len(kinds)] == kinds
    text = s.describe(p=2)
    assert "fill-in" in text and "nnz" in text
    for b in blocks:
        if b.kind in ("diagonal", "block-diagonal"):
            assert b.nnz == b.nnz_A
        if kind == "nested" and b.kind == "sparse":
            assert b.nnz == b.nnz_A  # nested factors add no fill-in
    if stages < s.K:  # crossed: the tail is held dense, its fill-in counted
        tail = blocks[-1]
        assert tail.kind == "dense" and tail.nnz > tail.nnz_A > 0


def _lmm(n_copies: int) -> LinearMixedModel:
    df = pd.concat([design("crossed", 5, n=300)] * n_copies, ignore_index=True)
    prob = build_problem("y ~ x + (1 | a) + (1 | b)", df, get_family("gaussian"), None, None, True)
    return LinearMixedModel(prob.structure, prob.X, prob.y, reml=False)


class _Untouchable:
    """Stands for a per-row array: its shape may be read, any use of its values fails."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.ndim = len(shape)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an evaluation used a per-row array ({name})")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an evaluation used a per-row array")

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError("an evaluation used a per-row array")


def test_lmm_evaluation_never_reads_the_rows() -> None:
    model = _lmm(1)
    theta = np.array([0.7, 0.4])
    before = model.deviance(theta)
    s = model.structure
    for t in s.reterms.terms:
        object.__setattr__(t, "X", _Untouchable(t.X.shape))
        object.__setattr__(t, "codes", _Untouchable(t.codes.shape))
    for pat in s.pairs.values():
        object.__setattr__(pat, "of_row", _Untouchable(pat.of_row.shape))
    s.X1 = _Untouchable(s.X1.shape)  # type: ignore[assignment]
    assert model.deviance(theta) == before
    est = model.estimates(np.array([0.5, 0.9]))
    assert np.isfinite(est.objective)


def test_lmm_evaluation_memory_does_not_grow_with_n() -> None:
    """Peak allocation of one evaluation is the same for 300 and 60,000 rows with the
    same levels: an evaluation allocates nothing of length n."""
    theta = np.array([0.6, 0.8])
    peaks = []
    for copies in (1, 200):
        model = _lmm(copies)
        model.deviance(theta)  # first-use work (compilation, caches) outside the count
        tracemalloc.start()
        model.deviance(theta)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    n_big = 300 * 200
    assert peaks[1] < peaks[0] + 8 * n_big // 4, peaks  # far below one float array of n


def test_duplicated_rows_equal_weights() -> None:
    """The factor of data stacked twice equals that of weights 2 (property test)."""
    df = design("partial", 7)
    fam = get_family("gaussian")
    f2 = "y ~ x + (1 + x | a) + (1 | b)"
    twice = build_problem(f2, pd.concat([df, df], ignore_index=True), fam, None, None, True)
    weighted = build_problem(f2, df.assign(two=2.0), fam, "two", None, True)
    theta = np.array([0.8, 0.1, 0.5, 0.9])
    a = LinearMixedModel(twice.structure, twice.X, twice.y, reml=True).deviance(theta)
    b = LinearMixedModel(weighted.structure, weighted.X, weighted.y, weighted.pw, reml=True)
    # weights 2 add -sum log w = -n log 2 to the criterion and count each row once
    assert np.isfinite(a) and np.isfinite(b.deviance(theta))
    fa = BlockedFactor(
        twice.structure, theta, twice.structure.gram(twice.pw, np.vstack([twice.X.T, twice.y]))
    )
    fb = BlockedFactor(
        weighted.structure,
        theta,
        weighted.structure.gram(weighted.pw, np.vstack([weighted.X.T, weighted.y])),
    )
    assert fa.logdet_L == pytest.approx(fb.logdet_L, rel=1e-12)
    assert fa.r2 == pytest.approx(fb.r2, rel=1e-11)


def test_describe_structure_before_fitting() -> None:
    from glmx.mixed.problem import describe_structure

    text = describe_structure(
        "y ~ x + (1 | a) + (1 | b)", design("crossed", 2), get_family("gaussian")
    )
    lines = text.splitlines()
    assert lines[0].startswith("blocked Cholesky factor L: 2 random-effect term(s)")
    assert "(1 | a): diagonal 17 x 17, nnz 17, fill-in 0" in text
    assert "(1 | b) x (1 | a): sparse 9 x 17" in text
    assert "(1 | b), X: dense 11 x 11" in text
    assert "work per evaluation" in lines[-1]


def test_small_models_are_one_dense_block_large_ones_staged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the default DENSE_TAIL_MAX: the designs above (q <= 60) are all tail; a nested
    model with more random effects keeps its nested terms as stages, and a small last
    term joins the tail."""
    monkeypatch.setattr(structure_module, "DENSE_TAIL_MAX", DENSE_TAIL_MAX)
    for formula in FORMULAS:
        s = problem(formula, "nested", 1).structure
        assert s.n_stages == 0 and s.q_tail == s.reterms.q
    rng = np.random.default_rng(5)
    n = 3000
    a = rng.permutation(np.arange(n) % 600)  # 600 classes in 200 schools in 4 districts
    df = pd.DataFrame(
        {"y": rng.standard_normal(n), "x": rng.standard_normal(n), "a": a, "b": a // 3,
         "c": a // 150, "w": np.ones(n)}
    )  # fmt: skip
    prob = build_problem(
        "y ~ x + (1 | a) + (1 | b) + (1 | c)", df, get_family("gaussian"), "w", None, True
    )
    s = prob.structure
    assert s.n_stages == 2 and s.q_tail == 4  # (1 | c)'s 4 levels are the dense tail
    f = BlockedFactor(s, np.array([0.7, 0.5, 0.3]), s.gram(prob.pw, np.vstack([prob.X.T, prob.y])))
    assert np.isfinite(f.logdet_L) and f.L11.shape == (600, 1, 1)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | a)", "y ~ x + (1 + x | a) + (1 | b)"])
def test_first_terms_factor_is_the_same_in_the_dense_block(
    formula: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L11 (adaptive quadrature's per-group scale) read from the dense factor equals the
    staged factor's."""
    theta = None
    out = []
    for limit in (0, 10**6):
        monkeypatch.setattr(structure_module, "DENSE_TAIL_MAX", limit)
        prob = problem(formula, "nested", 4)
        s = prob.structure
        if theta is None:
            theta = random_theta(prob, np.random.default_rng(9))
        f = BlockedFactor(s, theta, s.gram(prob.pw, np.vstack([prob.X.T, prob.y])))
        out.append(f.L11)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-12, atol=1e-14)


def test_fit_reports_its_structure() -> None:
    """fit.structure: the blocks of L and the dense block of a crossed model."""
    import glmx

    fit = glmx.glmm("y ~ x + (1 | a) + (1 | b)", design("crossed", 2), weights="w")
    text = fit.structure
    assert text.startswith("blocked Cholesky factor L: 2 random-effect term(s), q = 26, p = 2")
    assert "(1 | a): diagonal 17 x 17" in text
    assert "(1 | b), X: dense 11 x 11" in text


def _crossed_frame(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "a": rng.integers(0, 300, n),
         "b": rng.integers(0, 200, n)}
    )  # fmt: skip


def test_a_dense_block_beyond_memory_is_refused_naming_the_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import glmx
    import glmx.mixed.problem as problem_module

    monkeypatch.setattr(problem_module, "_physical_memory", lambda: 1e5)
    with pytest.raises(glmx.DataError, match=r"\(1 \| b\) make a dense block of 203 x 203"):
        glmx.glmm("y ~ x + (1 | a) + (1 | b)", _crossed_frame())


def test_a_slow_dense_block_warns_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense block whose Cholesky exceeds SLOW_DENSE_FLOPS (here lowered below this
    model's 2.8e6) warns before the fit and the message stays on the fit."""
    import warnings

    import glmx
    import glmx.mixed.problem as problem_module

    monkeypatch.setattr(problem_module, "SLOW_DENSE_FLOPS", 1e6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmx.glmm("y ~ x + (1 | a) + (1 | b)", _crossed_frame())
    slow = [w for w in caught if "expect a long fit" in str(w.message)]
    assert len(slow) == 1 and issubclass(slow[0].category, glmx.GlmxWarning)
    assert "2.8e+06 flops" in str(slow[0].message)
    assert any("expect a long fit" in m for m in fit.warnings)
    monkeypatch.setattr(problem_module, "SLOW_DENSE_FLOPS", 3e6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        glmx.glmm("y ~ x + (1 | a) + (1 | b)", _crossed_frame())
    assert not [w for w in caught if "expect a long fit" in str(w.message)]

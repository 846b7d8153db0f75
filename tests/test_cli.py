"""The ``glmx`` command line: fit, save, predict round trips on real files, output
formats, R's numbers through the CLI, and one-line errors with exit status 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.cli import CliError, main

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
DOBSON = str(DATA / "dobson.csv")
FORMULA = "counts ~ outcome + treatment"


def run(argv: list[str], capsys, stdin: str | None = None, monkeypatch=None):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *needles: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("glmx: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The insurance data (factors, an offset column) as CSV, Parquet and Feather."""
    d = tmp_path_factory.mktemp("data")
    df = pd.read_csv(DATA / "insurance.csv")
    paths = {"csv": d / "ins.csv", "parquet": d / "ins.parquet", "feather": d / "ins.feather"}
    df.to_csv(paths["csv"], index=False)
    df.to_parquet(paths["parquet"], index=False)
    df.to_feather(paths["feather"])
    return paths


INS = ("Claims ~ District + Group + Age", ["--family", "poisson", "--offset", "log_holders"])


# --- R's numbers through the command line ---------------------------------------------------
def r_case(name: str) -> dict:
    return json.loads((FIXTURES / "glm_cases.json").read_text())[name]


def fit_json(argv: list[str], capsys) -> dict:
    code, out, err = run([*argv, "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("case", "argv"),
    [
        # R 4.2.2: glm(counts ~ outcome + treatment, family = poisson, data = dobson)
        ("dobson_poisson", ["dobson.csv", FORMULA, "--family", "poisson"]),
        # R 4.2.2: glm(prop ~ sex * ldose, family = binomial, weights = total, data = budworm)
        (
            "budworm_logit",
            ["budworm.csv", "prop ~ sex * ldose", "--family", "binomial", "--weights", "total"],
        ),
        # R 4.2.2: MASS::glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine)
        (
            "quine_negbin",
            ["quine.csv", "Days ~ Eth + Sex + Age + Lrn", "--family", "negative_binomial"],
        ),
        # R 4.2.2: glm(mpg ~ wt + qsec, weights = carb, data = mtcars)
        ("mtcars_gaussian_weights", ["mtcars.csv", "mpg ~ wt + qsec", "--weights", "carb"]),
        # R 4.2.2: glm(Claims ~ District + Group + Age, poisson, offset = log_holders)
        ("insurance_poisson_offset", ["insurance.csv", INS[0], *INS[1]]),
        # R 4.2.2: glm(y ~ x1 + x2 + x3, data = collinear): x2 aliased, NA
        ("collinear_gaussian", ["collinear.csv", "y ~ x1 + x2 + x3"]),
    ],
)
def test_json_matches_r(case, argv, capsys):
    ref = r_case(case)  # tests/fixtures/glm_cases.json (R script in tests/fixtures/REFERENCE.md)
    doc = fit_json(["fit", str(DATA / argv[0]), *argv[1:]], capsys)
    st = doc["statistics"]
    np.testing.assert_allclose(st["deviance"], ref["deviance"], rtol=1e-7)
    np.testing.assert_allclose(st["null_deviance"], ref["null_deviance"], rtol=1e-7)
    np.testing.assert_allclose(st["aic"], ref["aic"], rtol=1e-7)
    assert st["df_resid"] == ref["df_residual"] and st["nobs"] == ref["n_used"]
    if case != "insurance_poisson_offset":  # Python sorts the insurance levels unlike R
        # an aliased coefficient is null in the JSON and NA (null) in R's
        est = np.array([c["estimate"] for c in doc["coefficients"]], dtype=float)
        se = np.array([c["std_error"] for c in doc["coefficients"]], dtype=float)
        np.testing.assert_allclose(est, np.array(ref["coef"], dtype=float), rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(se, np.array(ref["se"], dtype=float), rtol=1e-5)
    if case == "quine_negbin":  # R: MASS::glm.nb(...)$theta, $SE.theta
        np.testing.assert_allclose(st["theta"], ref["theta"], rtol=1e-4)
        np.testing.assert_allclose(st["theta_se"], ref["theta_se"], rtol=1e-3)


def test_text_is_the_summary_and_matches_r(capsys):
    code, out, err = run(["fit", DOBSON, FORMULA, "--family", "poisson"], capsys)
    assert code == 0 and err == ""
    data = pd.read_csv(DOBSON)
    assert out == str(glmx.glm(FORMULA, data, family="poisson").summary()) + "\n"
    # R 4.2.2: summary(glm(counts ~ outcome + treatment, family = poisson)) prints these
    for line in ("AIC: 56.761", "Residual deviance:  5.1291  on 4  degrees of freedom"):
        assert line in out


def test_markdown_tables(capsys):
    code, out, _ = run(
        ["fit", DOBSON, FORMULA, "--family", "poisson", "--format", "markdown"], capsys
    )
    assert code == 0
    lines = out.splitlines()
    assert "| term | estimate | std. error | z value | Pr(>\\|z\\|) |" in lines
    # R: (Intercept) 3.045e+00 1.709e-01 17.815 <2e-16; outcome2 -4.543e-01 ... 0.0246
    row = next(x for x in lines if x.startswith("| outcome[T.o2]"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "-0.454255" and cells[2] == "0.202171" and cells[4] == "0.0246"
    assert next(x for x in lines if x.startswith("| Intercept")).endswith("| <2e-16 |")
    assert "| aic | 56.7613 |" in lines
    assert "| deviance | 5.12914 |" in lines


# --- files, formats, round trips --------------------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "parquet", "feather"])
def test_fit_save_predict_round_trip(kind, files, tmp_path, capsys):
    model, out = tmp_path / "model.json", tmp_path / "pred.csv"
    code, _, err = run(["fit", str(files[kind]), INS[0], *INS[1], "--save", str(model)], capsys)
    assert code == 0, err
    code, stdout, err = run(
        ["predict", str(model), str(files[kind]), "--se", "-o", str(out)], capsys
    )
    assert code == 0 and stdout == "" and err == "", err
    data = pd.read_csv(files["csv"])
    ref = glmx.glm(INS[0], data, family="poisson", offset="log_holders")
    want = ref.predict(data, se=True)
    got = pd.read_csv(out)
    assert list(got.columns) == ["fit", "se"] and len(got) == len(data)
    np.testing.assert_allclose(got["fit"], want["fit"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["se"], want["se"], rtol=1e-12, atol=0)


def test_predict_link_scale_to_stdout_and_parquet_output(files, tmp_path, capsys):
    model = tmp_path / "m.json"
    assert run(["fit", str(files["csv"]), INS[0], *INS[1], "--save", str(model)], capsys)[0] == 0
    code, out, _ = run(["predict", str(model), str(files["feather"]), "--type", "link"], capsys)
    assert code == 0
    data = pd.read_csv(files["csv"])
    want = glmx.glm(INS[0], data, family="poisson", offset="log_holders").predict(data, type="link")
    got = pd.read_csv(io.StringIO(out))
    assert list(got.columns) == ["fit"]
    np.testing.assert_allclose(got["fit"], want, rtol=1e-12, atol=0)
    pq = tmp_path / "p.parquet"
    assert run(["predict", str(model), str(files["csv"]), "-o", str(pq)], capsys)[0] == 0
    np.testing.assert_allclose(pd.read_parquet(pq)["fit"], np.exp(want), rtol=1e-12)


def test_stdin_csv(monkeypatch, tmp_path, capsys):
    text = Path(DOBSON).read_text()
    model = tmp_path / "m.json"
    argv = ["fit", "-", FORMULA, "--family", "poisson", "--format", "json", "--save", str(model)]
    code, out, _ = run(argv, capsys, stdin=text, monkeypatch=monkeypatch)
    assert code == 0
    # R: coef(glm(counts ~ outcome + treatment, poisson))["(Intercept)"] = 3.044522
    assert json.loads(out)["coefficients"][0]["estimate"] == pytest.approx(3.044522437723, 1e-10)
    code, out, _ = run(["predict", str(model), "-"], capsys, stdin=text, monkeypatch=monkeypatch)
    assert code == 0
    # R: fitted(fit)[1:3] = 21, 13.33333, 15.66667
    np.testing.assert_allclose(
        pd.read_csv(io.StringIO(out))["fit"][:3], [21, 40 / 3, 47 / 3], rtol=1e-10
    )


def test_family_options(capsys):
    quine = str(DATA / "quine.csv")
    data = pd.read_csv(quine)
    f = "Days ~ Eth + Sex + Age + Lrn"
    doc = fit_json(["fit", quine, f, "--family", "negative_binomial", "--theta", "2"], capsys)
    want = glmx.glm(f, data, family=glmx.families.negative_binomial(theta=2))
    np.testing.assert_allclose([c["estimate"] for c in doc["coefficients"]], want.coef, rtol=1e-12)
    assert doc["statistics"]["theta"] == 2
    doc = fit_json(["fit", quine, f, "--family", "tweedie", "--power", "1.7"], capsys)
    want = glmx.glm(f, data, family=glmx.families.tweedie(power=1.7))
    np.testing.assert_allclose([c["estimate"] for c in doc["coefficients"]], want.coef, rtol=1e-12)
    assert doc["statistics"]["aic"] is None  # tweedie has no likelihood: NaN becomes null
    doc = fit_json(["fit", DOBSON, FORMULA, "--family", "poisson", "--link", "sqrt"], capsys)
    assert doc["link"] == "sqrt"
    # R 4.2.2: glm(counts ~ outcome + treatment, family = poisson(link = "sqrt"))
    np.testing.assert_allclose(
        doc["statistics"]["deviance"], r_case("dobson_poisson_sqrt")["deviance"], rtol=1e-7
    )


def test_warnings_are_one_line_each(capsys):
    code, out, err = run(
        ["fit", str(DATA / "separation.csv"), "y ~ x", "--family", "binomial"], capsys
    )
    assert code == 0 and "Coefficients:" in out
    assert err and all(line.startswith("glmx: warning: ") for line in err.splitlines())
    assert "separation" in err.lower()


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["fit", "nosuch.csv", FORMULA], ["nosuch.csv", "No such file"]),
        (["fit", "data.xlsx", FORMULA], ["data.xlsx", "extension"]),
        (["fit", DOBSON, "counts ~ outcome + nosuch"], ["nosuch"]),
        (["fit", DOBSON, "counts ~ (outcome"], []),
        (["fit", DOBSON, "__import__('os') ~ outcome"], []),
        (["fit", DOBSON, "counts ~ outcome.__class__"], []),
        (["fit", DOBSON, FORMULA, "--weights", "nosuch"], ["nosuch"]),
        (["fit", DOBSON, FORMULA, "--family", "poison"], ["poison"]),
        (["fit", DOBSON, FORMULA, "--family", "poisson", "--link", "logit"], ["logit"]),
        (["fit", DOBSON, FORMULA, "--family", "poisson", "--theta", "2"], ["--theta"]),
        (["predict", "nosuch.json", DOBSON], ["nosuch.json"]),
        (["predict", DOBSON, DOBSON], ["dobson.csv"]),  # a CSV is no model file
        (["fit", DOBSON], ["FORMULA"]),  # argparse usage error, kept to one line
        (["fit", DOBSON, FORMULA, "--format", "html"], ["html"]),
        (["glmm", DOBSON, "counts ~ outcome + (1 | nosuch)"], ["nosuch"]),
        (["glmm", DOBSON, "counts ~ 1 + (__import__('os') | treatment)"], []),
        (["glmm", DOBSON, "counts ~ outcome + (1 | treatment", "--family", "poisson"], []),
    ],
    ids=[
        "missing-file",
        "bad-extension",
        "bad-column",
        "bad-syntax",
        "import",
        "attribute",
        "bad-weights",
        "bad-family",
        "bad-link",
        "theta-not-nb",
        "missing-model",
        "csv-as-model",
        "usage",
        "bad-format",
        "glmm-bad-group",
        "glmm-hostile-term",
        "glmm-unbalanced",
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, needles, capsys):
    assert_one_line_error(*run(argv, capsys), *needles)


def test_unreadable_and_unsafe_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert_one_line_error(*run(["fit", str(bad), FORMULA], capsys), "bad.parquet")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_line_error(*run(["fit", str(empty), FORMULA], capsys), "empty.csv")
    # plain glmx.glm runs this term (and writes the file) before it finds no column
    # 'open(...)'; the command line refuses the formula before anything is evaluated
    canary = tmp_path / "CANARY"
    formula = f"counts ~ outcome + I(open({str(canary)!r}, 'w').close() or outcome)"
    assert_one_line_error(*run(["fit", DOBSON, formula], capsys))
    assert not canary.exists()


def test_bad_predict_data(tmp_path, capsys):
    model = tmp_path / "m.json"
    assert (
        run(["fit", DOBSON, FORMULA, "--family", "poisson", "--save", str(model)], capsys)[0] == 0
    )
    other = tmp_path / "other.csv"
    pd.DataFrame({"counts": [1], "outcome": ["o1"], "treatment": ["t9"]}).to_csv(other)
    assert_one_line_error(*run(["predict", str(model), str(other)], capsys), "t9")
    pd.DataFrame({"counts": [1], "outcome": ["o1"]}).to_csv(other)
    assert_one_line_error(*run(["predict", str(model), str(other)], capsys), "treatment")


def test_debug_shows_the_exception(capsys):
    with pytest.raises(glmx.GlmxError, match="nosuch"):
        main(["fit", DOBSON, "counts ~ nosuch", "--debug"])
    with pytest.raises(CliError, match="No such file"):
        main(["--debug", "fit", "nosuch.csv", FORMULA])


MIXED = Path(__file__).parent / "fixtures" / "mixed"


def test_glmm_summary_json_and_markdown(capsys):
    sleep = str(MIXED / "sleepstudy.csv")
    formula = "Reaction ~ Days + (Days | Subject)"
    code, out, _ = run(["glmm", sleep, formula], capsys)
    assert code == 0 and "Linear mixed model fit by REML" in out
    assert "REML criterion at convergence: 1743.6" in out
    code, out, _ = run(["glmm", sleep, formula, "--format", "json"], capsys)
    doc = json.loads(out)
    # lme4: REMLcrit 1743.628, fixef 251.405, 10.467; Subject intercept sd 24.74
    assert doc["statistics"]["reml_criterion"] == pytest.approx(1743.62827, abs=1e-4)
    assert [c["estimate"] for c in doc["coefficients"]] == pytest.approx(
        [251.405105, 10.467286], rel=1e-6
    )
    assert doc["random_effects"][0]["sdcor"] == pytest.approx(24.7407, rel=1e-4)
    assert doc["statistic"] == "t" and doc["n_groups"] == {"Subject": 18}
    code, out, _ = run(["glmm", sleep, formula, "--ml", "--format", "markdown"], capsys)
    assert code == 0 and "| reml_criterion | None |" in out
    assert "| loglik | -875.97" in out  # lme4 ML: -875.9697
    cbpp = str(MIXED / "cbpp.csv")
    code, out, _ = run(
        ["glmm", cbpp, "prop ~ period + (1 | herd)", "--family", "binomial", "--weights",
         "size", "--nagq", "25", "--format", "json"], capsys,
    )  # fmt: skip
    doc = json.loads(out)
    assert doc["statistics"]["loglik"] == pytest.approx(-91.98337, abs=1e-3)
    assert doc["statistic"] == "z" and doc["statistics"]["nagq"] == 25


def test_glmm_help(capsys):
    code, out, _ = run(["glmm", "--help"], capsys)
    assert code == 0 and "lme4" in out and "--nagq" in out


def test_demo_dispatches(monkeypatch, tmp_path, capsys):
    import glmx.demo

    seen = []
    monkeypatch.setattr(glmx.demo, "main", lambda plot_dir: seen.append(plot_dir))
    assert run(["demo", "--plot-dir", str(tmp_path)], capsys)[0] == 0
    assert seen == [str(tmp_path)]


# --- the real entry point: python -m glmx ---------------------------------------------------
def test_python_m_glmx_end_to_end(tmp_path):
    model = tmp_path / "m.json"
    cmd = [sys.executable, "-m", "glmx"]
    res = subprocess.run(
        [
            *cmd,
            "fit",
            DOBSON,
            FORMULA,
            "--family",
            "poisson",
            "--format",
            "json",
            "--save",
            str(model),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    # R 4.2.2: AIC(glm(counts ~ outcome + treatment, family = poisson, data = dobson))
    assert doc["statistics"]["aic"] == pytest.approx(r_case("dobson_poisson")["aic"], rel=1e-9)
    res = subprocess.run(
        [*cmd, "predict", str(model), "-", "--se"],
        input=Path(DOBSON).read_text(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert pd.read_csv(io.StringIO(res.stdout))["fit"].iloc[0] == pytest.approx(21, rel=1e-10)
    res = subprocess.run(
        [*cmd, "fit", DOBSON, "__import__('os') ~ x"], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("glmx: error: ")


def test_hostile_formulas_through_the_cli_never_run(tmp_path, capsys):
    # the 22 canary formulas of test_safe_formula (builtins, __import__, attribute
    # chains, lambda, comprehensions, f-strings, eval/exec...) plus huge exponents: each
    # is refused with exit status 2 and one line, and the canary file is never written
    from test_safe_formula import canary_formulas

    data = tmp_path / "d.csv"
    rng = np.random.default_rng(3)
    pd.DataFrame({"x": rng.uniform(1, 5, 40), "g": rng.choice(["a", "b"], 40)}).assign(
        y=lambda d: rng.poisson(d["x"])
    ).to_csv(data, index=False)
    canary = tmp_path / "canary.txt"
    hostile = [*canary_formulas(canary), "y ~ I(x ** 10 ** 10)", "y ~ ().__class__"]
    assert len(hostile) >= 20
    for formula in hostile:
        code, out, err = run(["fit", str(data), formula, "--family", "poisson"], capsys)
        assert_one_line_error(code, out, err)
        assert not canary.exists(), formula

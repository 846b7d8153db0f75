# One timed lme4::glmer fit on the mixed-model benchmark data (started by benchlib.run_fit
# from bench_glmm.py).
# usage: Rscript glmm_fit.R DATADIR FAMILY RESULT_JSON PARAMS_NPY N P
# Reads DATADIR/data.csv (string columns become factors) and the formula in
# DATADIR/formula.txt, runs a warm-up fit on the first 2,000 rows (lazy loading stays out of
# the timing), then times glmer(formula, data, family, control = glmerControl(optimizer =
# "bobyqa")) alone.  Writes the time, the number of deviance evaluations of the final
# optimization and the resident set sizes as JSON, and the fixed effects, theta and the
# log-likelihood (in that order) as a .npy file.
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; family <- args[2]; out_json <- args[3]; out_params <- args[4]
n <- as.numeric(args[5]); p <- as.numeric(args[6])

# write_npy() and rss_kb() are glm_fit.R's: evaluate those two definitions from it
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                         value = TRUE))))
for (e in parse(file.path(here, "glm_fit.R"))) {
  if (is.call(e) && identical(e[[1]], as.name("<-")) &&
      as.character(e[[2]]) %in% c("write_npy", "rss_kb")) eval(e)
}
stopifnot(exists("write_npy"), exists("rss_kb"))

suppressPackageStartupMessages(library(lme4))
d <- read.csv(file.path(dir, "data.csv"), stringsAsFactors = TRUE)
stopifnot(nrow(d) == n)
form <- as.formula(readLines(file.path(dir, "formula.txt"))[1])
fam <- switch(family, binomial = binomial(), poisson = poisson())
ctrl <- glmerControl(optimizer = "bobyqa")

warm <- droplevels(d[seq_len(min(nrow(d), 2000)), ])
invisible(try(suppressWarnings(suppressMessages(
  glmer(form, data = warm, family = fam, control = ctrl)
)), silent = TRUE))

invisible(gc())
rss_before <- rss_kb("VmRSS") * 1024
elapsed <- system.time(
  fit <- glmer(form, data = d, family = fam, control = ctrl)
)[["elapsed"]]
stopifnot(length(fixef(fit)) == p)

write_npy(c(fixef(fit), getME(fit, "theta"), as.numeric(logLik(fit))), out_params)
cat(sprintf('{"status": "ok", "seconds": %.6f, "n_iter": %d, "rss_before": %.0f, "peak_rss": %.0f}',
            elapsed, as.integer(fit@optinfo$feval), rss_before, rss_kb("VmHWM") * 1024),
    file = out_json)

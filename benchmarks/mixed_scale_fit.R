# One timed lme4 fit on the data of bench_mixed_scale.py (started by benchlib.run_fit).
# usage: Rscript mixed_scale_fit.R DATADIR FAMILY RESULT_JSON PARAMS_NPY N P
# Reads the columns DATADIR/<name>.f64 (float64) and DATADIR/<name>.i32 (0-based factor
# codes, levels in DATADIR/<name>.levels) listed in DATADIR/meta.json, runs a warm-up fit on
# the first 2,000 rows (lazy loading stays out of the timing), then times lme4 with its
# defaults alone: lmer(formula, data, REML = FALSE) for gaussian (nloptwrap), glmer(formula,
# data, family, nAGQ = 1) otherwise (bobyqa, then Nelder_Mead).  Writes the time, the
# optimizer's evaluations (fit@optinfo$feval: glmer's second stage) and the resident set
# sizes as JSON, and the fixed effects, theta and the log-likelihood as a .npy file.
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
meta <- jsonlite::fromJSON(file.path(dir, "meta.json"), simplifyVector = FALSE)
stopifnot(meta$n == n, meta$p == p)

read_column <- function(name, kind) {
  path <- file.path(dir, paste0(name, if (kind == "factor") ".i32" else ".f64"))
  con <- file(path, "rb")
  on.exit(close(con))
  if (kind == "factor") {
    codes <- readBin(con, "integer", n = n, size = 4, endian = "little")
    structure(codes + 1L, levels = readLines(file.path(dir, paste0(name, ".levels"))),
              class = "factor")
  } else {
    readBin(con, "double", n = n, size = 8, endian = "little")
  }
}
d <- as.data.frame(lapply(meta$columns, function(col) read_column(col$name, col$kind)),
                   col.names = vapply(meta$columns, function(col) col$name, ""))
form <- as.formula(meta$formula)

fit_one <- function(data) {
  if (family == "gaussian") lmer(form, data = data, REML = FALSE)
  else glmer(form, data = data, family = get(family)(), nAGQ = 1)
}
warm <- droplevels(d[seq_len(min(nrow(d), 2000)), ])
invisible(try(suppressWarnings(suppressMessages(fit_one(warm))), silent = TRUE))

invisible(gc())
rss_before <- rss_kb("VmRSS") * 1024
msgs <- character(0)
elapsed <- system.time(
  fit <- withCallingHandlers(fit_one(d), warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning")
  }, message = function(m) {
    msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage")
  })
)[["elapsed"]]
stopifnot(length(fixef(fit)) == p)

write_npy(c(fixef(fit), getME(fit, "theta"), as.numeric(logLik(fit))), out_params)
msg <- gsub('["\\\n]', " ", paste(trimws(msgs), collapse = " | "))
cat(sprintf(paste0('{"status": "ok", "seconds": %.6f, "n_iter": %d, "rss_before": %.0f, ',
                   '"peak_rss": %.0f, "messages": "%s"}'),
            elapsed, as.integer(fit@optinfo$feval), rss_before, rss_kb("VmHWM") * 1024, msg),
    file = out_json)

# One timed R glm.fit on the dense benchmark data (started by benchlib.run_fit).
# usage: Rscript glm_fit.R DATADIR FAMILY RESULT_JSON COEF_NPY N P
# Reads DATADIR/X.f64 (column-major float64) and DATADIR/y.f64, times glm.fit alone
# with glm.control(epsilon = 1e-10) (glmx's default tol, the same criterion), writes the
# time, the iteration count and the resident set size before the fit as JSON, and the
# coefficients as a .npy file.
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; family <- args[2]; out_json <- args[3]; out_coef <- args[4]
n <- as.numeric(args[5]); p <- as.numeric(args[6])

read_f64 <- function(name, len) {
  con <- file(file.path(dir, name), "rb")
  on.exit(close(con))
  readBin(con, "double", n = len, size = 8, endian = "little")
}
X <- matrix(read_f64("X.f64", n * p), nrow = n, ncol = p)
y <- read_f64("y.f64", n)
fam <- switch(family, poisson = poisson(), binomial = binomial(), gamma = Gamma(link = "log"))

rss_kb <- function(field) {
  line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
  as.numeric(strsplit(trimws(sub(paste0(field, ":"), "", line)), " +")[[1]][1])
}
invisible(gc())
rss_before <- rss_kb("VmRSS") * 1024
elapsed <- system.time(
  fit <- glm.fit(X, y, family = fam, intercept = TRUE,
                 control = glm.control(epsilon = 1e-10, maxit = 100))
)[["elapsed"]]

# a minimal .npy (version 1.0) writer for a float64 vector
write_npy <- function(x, path) {
  header <- sprintf("{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }", length(x))
  pad <- 64 - (10 + nchar(header) + 1) %% 64
  header <- paste0(header, strrep(" ", pad), "\n")
  con <- file(path, "wb")
  on.exit(close(con))
  writeBin(as.raw(c(0x93, charToRaw("NUMPY"), 0x01, 0x00)), con)
  writeBin(as.integer(nchar(header)), con, size = 2, endian = "little")
  writeBin(charToRaw(header), con)
  writeBin(as.numeric(x), con, size = 8, endian = "little")
}
write_npy(fit$coefficients, out_coef)
cat(sprintf('{"status": "ok", "seconds": %.6f, "n_iter": %d, "rss_before": %.0f, "peak_rss": %.0f}',
            elapsed, fit$iter, rss_before, rss_kb("VmHWM") * 1024),
    file = out_json)

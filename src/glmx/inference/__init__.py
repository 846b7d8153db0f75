"""Inference on fitted models: Wald tests and intervals."""

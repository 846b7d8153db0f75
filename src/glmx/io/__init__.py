"""Reading and writing fitted models."""

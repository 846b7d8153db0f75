"""Fitted-model results (immutable) and their presentation."""

"""Helpers for the project's own tests and benchmarks (not needed to use the plugin)."""

"""Benchmarks that print numbers (``sigueme bench ...``); nothing here asserts speed."""

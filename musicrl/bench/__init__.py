"""Benchmarks behind ``musicrl bench``: ratios against a baseline measured in the same run."""

"""Tabular search: accuracy and device latency looked up in a benchmark table, no training."""

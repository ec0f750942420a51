"""Evaluation: path metrics, quality suites, the suite runner, reports and the rooms judge."""

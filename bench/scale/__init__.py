"""bench/quality_scale.py's parts: the coalition oracle and photos (oracle.py), sampled
references with standard errors (reference.py), the estimators (estimators.py), metrics
(metrics.py), one configuration end to end (runner.py), targets and table (report.py)."""

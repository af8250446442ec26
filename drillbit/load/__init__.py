"""Load, stress, soak and performance-regression testing (no Prefect, no Locust imports here).

- ``scenarios``: the seed's load scenarios as data (validated pydantic models, real durations, ``time_scale``);
- ``runner``: the Locust command line for a scenario and the bounded subprocess that runs it;
- ``results``: reading the generator's records, coordinated-omission-corrected percentiles (HDR), time series;
- ``grading``: the scenario's budgets as criteria over the Timeline; breaking-point analysis;
- ``regression``: a run against its stored baseline (Mann-Whitney U and a bootstrap CI on per-second p95s);
- ``plots``: throughput and latency percentiles over time.

Locust itself only ever runs in a subprocess (gevent's monkey-patching breaks Prefect): the locustfiles live in
``infra/load/locustfiles``.
"""

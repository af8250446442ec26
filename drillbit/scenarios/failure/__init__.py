"""The failure-mode tests: cascading failure (the provider's circuit breaker), split brain (a partitioned validator
network), resource exhaustion (memory pressure on a node). One module each: parameters, fault, monitors, criteria and
``build``, the experiment the flow runs."""

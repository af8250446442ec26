"""Disaster recovery: what the drills measure (``objectives``: RTO, RPO, steps, the report), what they do to the
sandbox (``operations``), the harness that makes a DR scenario an experiment of the core runner (``harness``), the
three scenarios (``dc_loss``, ``db_corruption``, ``rebuild``) and the quarterly drill (``drill``)."""

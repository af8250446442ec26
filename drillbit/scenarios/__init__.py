"""Every test type's core, one module per scenario: parameters, fault per platform, monitors and workloads, criteria."""

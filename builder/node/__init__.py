"""Per-node files: one module per contribution to what lands on a node."""

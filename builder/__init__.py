"""bake: turn a cluster profile into PKI, per-node cloud-init and NoCloud seeds, offline."""

__version__ = "0.1.0"

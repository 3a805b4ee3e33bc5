"""QEMU test harness for bake: guest image builder, VM runner and in-guest checks (see README.md)."""

"""The secrets bundle: CAs, service-account key, bootstrap token and every leaf certificate, kept on disk.

Later bakes reuse the bundle byte for byte. CAs, the SA key and the token change only on an explicit
rotation; a leaf is re-issued only when kubeadm's own reuse check (spec 1.7) would reject it for the
current plan (a node's IP changed, a SAN was added) or it is near expiry, and every re-issue is
reported. A bundle that does not match itself is an error, never repaired.

This package: `bundle` (the bundle in memory and the changes made to it), `specs` (which leaves each
owner needs), `windows` (certificate lifetimes and when one is due), `issuing` (a new bundle, or the one
on disk reconciled with the plan), `seed_server` (`bake serve`'s secrets), `layout` (the files on disk)
and `loading` (reading them back, checked). Here, the names the rest of bake reads.
"""

from __future__ import annotations

from .bundle import OPERATOR, Bundle, Change, Issued, utcnow
from .issuing import reconcile, stale_leaves
from .layout import bundle_files, secret_file
from .loading import load_bundle
from .seed_server import report_node_key
from .specs import required_specs
from .windows import due_window, renewal_before

__all__ = [
    "OPERATOR",
    "Bundle",
    "Change",
    "Issued",
    "bundle_files",
    "due_window",
    "load_bundle",
    "reconcile",
    "renewal_before",
    "report_node_key",
    "required_specs",
    "secret_file",
    "stale_leaves",
    "utcnow",
]

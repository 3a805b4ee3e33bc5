"""The live page at the server's root, and the state document it (and `bake status --json`) reads.

No build step and no framework: one HTML page, one script and one style sheet (templates/serve/). The
script polls `api/state` every second and redraws the tables (the running steps' clocks move). Everything a
node sent (its log tail above all) is put into the page with `textContent`, never as markup, and the
page is served with a Content-Security-Policy that allows no inline script and no other origin: a node
cannot script the operator's browser.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from .. import resources
from .catalog import Catalog
from .protocol import STEPS
from .store import Store, no_report

STATE_ROUTE = "/api/state"
SCRIPT_ROUTE = "/app.js"
STYLE_ROUTE = "/app.css"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def state_document(catalog: Catalog, stores: dict[str, Store]) -> dict[str, Any]:
    """Every cluster, every node (role, address, MAC, architecture) and its reported state."""
    clusters = []
    version = 0
    for name, cluster in catalog.clusters.items():
        store = stores.get(name)
        version += store.version if store is not None else 0
        states = store.nodes(cluster.nodes) if store is not None else {}
        nodes = []
        for n in cluster.nodes.values():
            state = states.get(n.name) or no_report()
            nodes.append(
                {
                    "name": n.name,
                    "role": n.role,
                    "ip": str(n.ip),
                    "mac": n.mac,
                    "arch": n.arch,
                    "seedServed": n.published,
                    "reports": cluster.report_url is not None,
                    **state,
                }
            )
        clusters.append({"name": name, "reportUrl": cluster.report_url, "nodes": nodes})
    return {"version": version, "now": time.time(), "steps": list(STEPS), "clusters": clusters}


@cache
def asset(name: str) -> bytes:
    """index.html, app.js or app.css (templates/serve/: plain files, no build step, no rendering)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.templates_dir() / "serve" / name).read_bytes()


ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}  # fmt: skip

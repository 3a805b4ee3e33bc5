"""What a node gets to report its first boot to `bake serve`: only when the profile names a report URL.

The reporter (templates/bootstrap/report.sh, the same bytes for every node) and the shell-quoted
/etc/bake/report.env it reads. The node's own report key and the pinned seed CA come from the secrets
bundle (builder.node.distribute, placement.TABLE); the unit lines that call the reporter from
builder.node.bootstrap. Without cluster.seed.reportUrl none of it exists and the seed is byte for byte
what it was before reports existed.
"""

from __future__ import annotations

import shlex
from functools import cache
from urllib.parse import urlsplit

from .. import paths, resources
from ..files import NodeFile, public
from ..node.bootstrap import layout as bootstrap_layout
from ..plan import ClusterPlan, NodePlan
from . import protocol

SCRIPT_NAME = "report.sh"
ENV_NAMES = ("BAKE_REPORT_URL", "BAKE_REPORT_CLUSTER", "BAKE_REPORT_NODE", "BAKE_REPORT_CACERT")
"""What report.sh reads from paths.REPORT_ENV (it runs with `set -u`: a missing one stops it)."""


def applies(plan: ClusterPlan) -> bool:
    return plan.settings.seed.report_url is not None


def endpoint(report_url: str) -> str:
    """Where the node POSTs: the server's base URL (cluster.seed.reportUrl) + protocol.PATH."""
    return report_url.rstrip("/") + protocol.PATH


def pins_ca(report_url: str) -> bool:
    """An https:// report URL: the node trusts the bundle's seed CA only (curl --cacert)."""
    return urlsplit(report_url).scheme == "https"


@cache
def script_text() -> str:
    return (resources.templates_dir() / bootstrap_layout.SCRIPTS_DATA_DIR / SCRIPT_NAME).read_text()


def env_text(plan: ClusterPlan, node: NodePlan) -> str:
    url = plan.settings.seed.report_url
    assert url is not None
    values = {
        "BAKE_REPORT_URL": endpoint(url),
        "BAKE_REPORT_CLUSTER": plan.name,
        "BAKE_REPORT_NODE": node.name,
        "BAKE_REPORT_CACERT": paths.REPORT_CA if pins_ca(url) else "",
    }
    assert tuple(values) == ENV_NAMES
    lines = ["# bake: where this node reports its first boot (`bake serve`); each value shell-quoted"]
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def report_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """The reporter and its env file (no secret in either); nothing without cluster.seed.reportUrl."""
    if not applies(plan):
        return []
    return [
        NodeFile(bootstrap_layout.REPORT_SCRIPT_PATH, script_text().encode(), 0o755),
        public(paths.REPORT_ENV, env_text(plan, node)),
    ]

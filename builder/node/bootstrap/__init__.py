"""The first-boot bootstrap: plain shell scripts, one systemd unit per phase, and the env file they read.

The scripts (templates/bootstrap/*.sh: lib.sh, one script per phase and the driver) are the same bytes
for every node and every profile; what differs reaches them only through /etc/bake/bootstrap.env, whose
names are fixed in `env` and whose every value is `shlex.quote`d. So no profile string can become shell
code, whatever characters it holds. Each phase runs as its own unit, ordered with Requires=/After=;
bake-bootstrap.service starts the chain and owns the retries (see `units.unit_text`).

This package: `layout` (where the bootstrap's files live on the node, its waits and retries), `env`
(the env file), `units` (the systemd units), `cni` (the pod network add-on); here, the scripts and the
file set a node gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from ... import resources
from ...files import NodeFile, public
from ...plan import ClusterPlan, NodePlan
from ..host import HostPrep
from . import cni, env, layout, units
from .cni import DEFAULT_CNI_SOURCE, CniSource, cni_config_file
from .env import BootstrapRole, bootstrap_role, env_text, env_values, pem_certificates
from .layout import (
    ENV_PATH,
    JOIN_TOKEN_SERVICE_PATH,
    JOIN_TOKEN_TIMER_PATH,
    LIB_DIR,
    OTHER_SCRIPTS,
    PHASES,
    SCRIPT_PATH,
    SCRIPTS_DATA_DIR,
    UNIT_NAME,
    UNIT_PATH,
    phase_script_path,
)
from .units import join_token_units, phase_unit_path, phase_unit_text, unit_text

# The file set, and what builder.node.cloudinit and builder.check read from the package; every other
# name is read from its own module.
__all__ = [
    "DEFAULT_CNI_SOURCE",
    "UNIT_NAME",
    "CniSource",
    "bootstrap_files",
    "cni",
    "env",
    "layout",
    "pem_certificates",
    "script_text",
    "script_texts",
    "units",
]


@cache
def script_texts() -> dict[str, str]:
    """Every script by its file name (lib.sh, bootstrap.sh, <phase>.sh): plain shell from the package
    data, the same bytes for every node."""
    folder = resources.templates_dir() / SCRIPTS_DATA_DIR
    texts = {p.name: p.read_text() for p in sorted(folder.glob("*.sh")) if p.name not in OTHER_SCRIPTS}
    expected = {"lib.sh", "bootstrap.sh", *(f"{p}.sh" for p in PHASES)}
    if set(texts) != expected:
        raise FileNotFoundError(f"{folder}: expected the scripts {sorted(expected)}, found {sorted(texts)}")
    return texts


def script_text() -> str:
    """The driver, installed as SCRIPT_PATH."""
    return script_texts()["bootstrap.sh"]


def bootstrap_files(
    plan: ClusterPlan,
    node: NodePlan,
    prep: HostPrep,
    *,
    node_files: Sequence[NodeFile],
    cni_source: CniSource = DEFAULT_CNI_SOURCE,
) -> list[NodeFile]:
    """Scripts, units, env file and (init node) the CNI configuration."""
    values = env_values(plan, node, prep, node_files=node_files, cni_source=cni_source)
    texts = script_texts()
    report = plan.settings.seed.report_url is not None
    files = [
        NodeFile(SCRIPT_PATH, texts["bootstrap.sh"].encode(), 0o755),
        NodeFile(f"{LIB_DIR}/lib.sh", texts["lib.sh"].encode(), 0o644),
        public(UNIT_PATH, unit_text(report)),
        public(ENV_PATH, env_text(values)),
    ]
    for phase in PHASES:
        files.append(NodeFile(phase_script_path(phase), texts[f"{phase}.sh"].encode(), 0o755))
        files.append(public(phase_unit_path(phase), phase_unit_text(phase, report)))
    if bootstrap_role(node) is BootstrapRole.INIT:
        cni_file = cni_config_file(plan, node.arch.value, cni_source)
        if cni_file is not None:
            files.append(cni_file)
        if values["BAKE_JOIN_TOKEN_ID"]:
            service, timer = join_token_units()
            files += [public(JOIN_TOKEN_SERVICE_PATH, service), public(JOIN_TOKEN_TIMER_PATH, timer)]
    return files

"""Where the first-boot bootstrap lives on the node (scripts, env file, state, log) and its fixed bounds
(waits, retries), shared by the env file, the units and the file set."""

from __future__ import annotations

from ... import paths

SCRIPT_PATH = "/usr/local/sbin/bake-bootstrap"
UNIT_NAME = "bake-bootstrap.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
LIB_DIR = "/usr/local/lib/bake/bootstrap"
"""lib.sh and the phase scripts on the node (the driver, SCRIPT_PATH, sources lib.sh from here)."""
PHASES = ("prep", "packages", "runtime", "wait", "kubeadm", "cni")
"""The phases in their order: bake-bootstrap-<phase>.service runs LIB_DIR/<phase>.sh (lib.sh's PHASES)."""
SCRIPTS_DATA_DIR = "bootstrap"
"""Where the scripts are in the package data (templates/bootstrap/)."""
OTHER_SCRIPTS = ("renew-certs.sh", "report.sh")
"""Beside them: the certificate renewal's (builder.node.renewal) and the reporter, shipped only with
cluster.seed.reportUrl (builder.serve.nodefiles)."""
REPORT_SCRIPT_PATH = f"{LIB_DIR}/report.sh"
"""Called by the units around each run when the profile names a report URL (`report_lines`)."""
ENV_PATH = paths.BOOTSTRAP_ENV
STATE_DIR = "/var/lib/bake"
STEPS_DIR = f"{STATE_DIR}/steps"
DONE_PATH = f"{STATE_DIR}/bootstrap.done"
SAVED_CONFIG_DIR = f"{STATE_DIR}/kubeadm"
LOG_PATH = "/var/log/bake/bootstrap.log"
CAPI_SENTINEL_PATH = "/run/cluster-api/bootstrap-success.complete"
CNI_DIR = paths.CNI_DIR
ADMIN_CONF_PATH = paths.ADMIN_CONF

# Bounded waits of joining nodes; past them the run fails and systemd runs it again (see RETRY_*).
WAIT_ENDPOINT_SECONDS = 1800
WAIT_PEERS_SECONDS = 3600
# The first control plane of an external etcd waits for every member's /health before kubeadm init
# (kubeadm's own external-etcd preflight gives up after ~15 s, too soon when all machines boot at once).
WAIT_ETCD_SECONDS = 900
# kubectl through the endpoint (the VIP can move while control planes join): retried this long.
KUBECTL_RETRY_SECONDS = 600

# cluster.join: token. The first control plane keeps the bundle's token alive for nodes that join later:
# after kubeadm init, then from a timer (at every boot and every JOIN_TOKEN_PERIOD), it re-creates the
# token with the profile's TTL when it is missing or has less than JOIN_TOKEN_REFRESH_SECONDS left.
JOIN_TOKEN_UNIT = "bake-join-token"
JOIN_TOKEN_SERVICE_PATH = f"/etc/systemd/system/{JOIN_TOKEN_UNIT}.service"
JOIN_TOKEN_TIMER_PATH = f"/etc/systemd/system/{JOIN_TOKEN_UNIT}.timer"
JOIN_TOKEN_PERIOD = "30min"
JOIN_TOKEN_REFRESH_SECONDS = 3600  # twice the period: a timer run always comes before the expiry

# A failed run is restarted by systemd (Restart=on-failure, RestartSec), after a delay growing from
# RETRY_BASE_SECONDS (doubling, at most RETRY_MAX_SECONDS), at most RETRY_MAX_ATTEMPTS times per boot;
# the last failure exits GIVE_UP_STATUS, which RestartPreventExitStatus= makes final until a reboot.
RETRY_MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 600
RESTART_SEC = 15
GIVE_UP_STATUS = 75  # EX_TEMPFAIL
ATTEMPTS_PATH = "/run/bake/bootstrap.attempts"
"""Per boot: /run is a tmpfs, so a reboot starts counting again."""
# The node's baked files under what kubeadm reset empties are kept before the first kubeadm run and
# restored after a reset.
KUBEADM_RESET_TREES = paths.KUBEADM_RESET_TREES


def phase_script_path(phase: str) -> str:
    return f"{LIB_DIR}/{phase}.sh"

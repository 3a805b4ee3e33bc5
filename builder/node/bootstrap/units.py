"""The bootstrap's systemd units: the driver, bake-bootstrap.service, which starts the chain and owns the
retries; one oneshot per phase, ordered with Requires=/After=; and the join token's service and timer."""

from __future__ import annotations

from .layout import (
    DONE_PATH,
    GIVE_UP_STATUS,
    JOIN_TOKEN_PERIOD,
    PHASES,
    REPORT_SCRIPT_PATH,
    RESTART_SEC,
    RETRY_MAX_ATTEMPTS,
    SCRIPT_PATH,
    STEPS_DIR,
    phase_script_path,
)


def phase_unit_name(phase: str) -> str:
    return f"bake-bootstrap-{phase}.service"


def phase_unit_path(phase: str) -> str:
    return f"/etc/systemd/system/{phase_unit_name(phase)}"


def report_lines(step: str, *, driver: bool = False) -> tuple[str, str]:
    """The unit lines that report a run to `bake serve` (cluster.seed.reportUrl), before and after
    ExecStart=: '-' so that a failed report never fails the unit; the script bounds its own time and
    always exits 0. No other line of the unit changes, so a seed without a report URL is what it was
    before reports existed."""
    script = REPORT_SCRIPT_PATH
    return (
        f"ExecStartPre=-{script} {step} started\n",
        f"ExecStartPost=-{script} {step} {'finished' if driver else 'done'}\n"
        f"ExecStopPost=-{script} {step} stopped\n",
    )


def unit_text(report: bool = False) -> str:
    # The driver. After cloud-init.service (which runs write_files), never After=cloud-final.service:
    # cloud-final is ordered after multi-user.target on Debian/Ubuntu, and this unit is wanted by
    # multi-user.target, which would be an ordering cycle. runcmd starts it with --no-block on the first
    # boot; later boots start it through multi-user.target until the done file exists.
    # After time-sync.target: certificates and TLS need a right clock (the prep phase warns when the clock
    # is still before the certificates' NotBefore). It does not wait for a first NTP answer (that is
    # systemd-time-wait-sync.service, which has no bound): an air-gapped site must not hang here.
    # The retries live here, not in the phase units: before systemd 254 (RestartMode=direct) a phase
    # restarted by Restart= would already have failed the jobs of the phases that require it, so the
    # chain would stop there. A failed run of the driver (a phase failed) is restarted instead, and its
    # `systemctl start` runs the failed phase and those after it again (a phase that succeeded stays
    # active). Restart=on-failure on a oneshot needs systemd >= 244 (every supported OS has it). The
    # script bounds the attempts itself; the start limit only guards against a script that exits at once.
    # The driver names no phase unit in its dependencies, so the phase units are loaded only when it
    # starts them (after anything that adds drop-ins to them at boot).
    pre, post = report_lines("bootstrap", driver=True) if report else ("", "")
    return (
        "[Unit]\n"
        "Description=bake: bootstrap this Kubernetes node (kubeadm) until it is done\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        "Wants=network-online.target time-sync.target\n"
        "After=network-online.target time-sync.target cloud-init.service\n"
        f"ConditionPathExists=!{DONE_PATH}\n"
        "StartLimitIntervalSec=1h\n"
        f"StartLimitBurst={2 * RETRY_MAX_ATTEMPTS}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"{pre}"
        f"ExecStart={SCRIPT_PATH}\n"
        f"{post}"
        "Restart=on-failure\n"
        f"RestartSec={RESTART_SEC}s\n"
        f"RestartPreventExitStatus={GIVE_UP_STATUS}\n"
        "TimeoutStartSec=infinity\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


_PHASE_DESCRIPTIONS = {
    "prep": "host preparation (kernel modules, sysctls, swap, SELinux, firewall)",
    "packages": "repositories and packages",
    "runtime": "container runtime, air-gapped images, kubelet enabled",
    "wait": "wait for what kubeadm needs (etcd, endpoint, earlier control planes)",
    "kubeadm": "kubeadm init or join (etcd member: its kubelet)",
    "cni": "pod network add-on",
}


def phase_unit_text(phase: str, report: bool = False) -> str:
    """One phase: a oneshot that stays active once it succeeded (the driver's next run in this boot
    skips it), requiring and ordered after the phase before it; no [Install]: the driver starts it."""
    index = PHASES.index(phase)
    if index == 0:
        deps = (
            "Wants=network-online.target time-sync.target\n"
            "After=network-online.target time-sync.target cloud-init.service\n"
        )
    else:
        previous = phase_unit_name(PHASES[index - 1])
        deps = f"Requires={previous}\nAfter={previous}\n"
    # The wait phase first checks that kubeadm is there at all: a node without it fails at once
    # instead of after the waits.
    check = f"ExecStartPre={phase_script_path('kubeadm')} check\n" if phase == "wait" else ""
    pre, post = report_lines(phase) if report else ("", "")
    return (
        "[Unit]\n"
        f"Description=bake: first-boot phase {phase}: {_PHASE_DESCRIPTIONS[phase]}\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        f"{deps}"
        f"ConditionPathExists=!{DONE_PATH}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"{pre}"
        f"{check}"
        f"ExecStart={phase_script_path(phase)}\n"
        f"{post}"
        "TimeoutStartSec=infinity\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
    )


def join_token_units() -> tuple[str, str]:
    """The service and timer that keep the join token alive on the first control plane (cluster.join:
    token). The bootstrap enables the timer once `kubeadm init` is done; the service does nothing before."""
    service = (
        "[Unit]\n"
        "Description=bake: keep the bootstrap token alive for nodes that join later (cluster.join: token)\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        f"ConditionPathExists={STEPS_DIR}/kubeadm-init.done\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={phase_script_path('kubeadm')} join-token\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
    )
    timer = (
        "[Unit]\n"
        "Description=bake: re-create the bootstrap token when it is missing or about to expire\n"
        "\n"
        "[Timer]\n"
        "OnBootSec=2min\n"
        f"OnUnitActiveSec={JOIN_TOKEN_PERIOD}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return service, timer

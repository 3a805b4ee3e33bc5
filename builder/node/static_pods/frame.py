"""kubeadm's static pod frame, shared by every pod bake writes: the ComponentPod frame, its probes and
host-path volumes, the flag order of ArgumentsToCommand, and keys sorted as Go's YAML marshalling does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...model import Arg

NODE_CRITICAL_PRIORITY = 2000001000


def _sorted(value: Any) -> Any:
    """Mapping keys sorted at every level (lists keep their order), like Go's YAML marshalling."""
    if isinstance(value, Mapping):
        return sorted_mapping(value)
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def sorted_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _sorted(value[k]) for k in sorted(value)}


def arguments_to_command(
    base: Sequence[tuple[str, str]], overrides: Sequence[Arg], *, user_order_kept: bool
) -> list[str]:
    """kubeadm's ArgumentsToCommand: a user arg replaces every default of the same name.

    Before k/k PR #135400 everything is sorted by name, then value. After it only the defaults are
    sorted and the user's args follow them in their own order ("In the return list, base arguments
    will precede override arguments", cmd/kubeadm/app/util/arguments.go @ v1.37.2).
    """
    names = {a.name for a in overrides}
    kept = sorted((n, v) for n, v in base if n not in names)
    user = [(a.name, a.value) for a in overrides]
    args = [*kept, *user] if user_order_kept else sorted([*user, *kept])
    return [f"--{n}={v}" for n, v in args]


def probe(
    host: str, path: str, port: int | str, scheme: str, kind: str, startup_threshold: int
) -> dict[str, Any]:
    """staticpodutil.{Liveness,Readiness,Startup}Probe (kubeadm-spec.md 5.1): zero fields omitted."""
    probe: dict[str, Any] = {"httpGet": {"host": host, "path": path, "port": port, "scheme": scheme}}
    probe["timeoutSeconds"] = 15
    if kind == "liveness":
        probe.update(initialDelaySeconds=10, periodSeconds=10, failureThreshold=8)
    elif kind == "readiness":
        probe.update(periodSeconds=1, failureThreshold=3)
    else:
        probe.update(initialDelaySeconds=10, periodSeconds=10, failureThreshold=startup_threshold)
    return probe


def component_pod(
    name: str, container: dict[str, Any], volumes: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """kubeadm's ComponentPod frame: kube-system, host network, node-critical, RuntimeDefault seccomp."""
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "hostNetwork": True,
        "priority": NODE_CRITICAL_PRIORITY,
        "priorityClassName": "system-node-critical",
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": volumes,
        **spec,
    }
    return sorted_mapping(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": {"component": name, "tier": "control-plane"},
                "name": name,
                "namespace": "kube-system",
            },
            "spec": pod_spec,
        }
    )


def host_path_volume(name: str, path: str, type_: str) -> dict[str, Any]:
    return {"hostPath": {"path": path, "type": type_}, "name": name}

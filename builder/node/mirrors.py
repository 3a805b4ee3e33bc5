"""Registry mirrors (`cluster.registryMirrors`) as the container runtime's own configuration.

containerd: one `certs.d/<host>/hosts.toml` per registry (containerd docs/hosts.md), found through the
CRI plugin's `registry.config_path`; CRI-O: a containers-registries.conf(5) drop-in with one
`[[registry]]` per registry and its `[[registry.mirror]]` entries. Both are built as data and
written with tomli-w.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import tomli_w

from ..files import NodeFile, public

CERTS_D = "/etc/containerd/certs.d"
REGISTRIES_DROPIN = "/etc/containers/registries.conf.d/10-bake-mirrors.conf"
HEADER = "# bake: registry mirrors from cluster.registryMirrors\n"

# Docker Hub's registry API does not answer at docker.io itself (containerd docs/hosts.md).
_UPSTREAM = {"docker.io": "https://registry-1.docker.io"}


def upstream(host: str) -> str:
    return _UPSTREAM.get(host, f"https://{host}")


def hosts_toml(host: str, mirrors: Sequence[str]) -> dict[str, object]:
    """Mirrors first, in profile order; the registry itself (`server`) only when every mirror fails."""
    return {
        "server": upstream(host),
        "host": {url: {"capabilities": ["pull", "resolve"]} for url in mirrors},
    }


def containerd_files(mirrors: Mapping[str, Sequence[str]]) -> list[NodeFile]:
    return [
        public(f"{CERTS_D}/{host}/hosts.toml", HEADER + tomli_w.dumps(hosts_toml(host, urls)))
        for host, urls in sorted(mirrors.items())
    ]


def registries_conf(mirrors: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """containers-registries.conf(5): a mirror's location has no scheme; plain HTTP means insecure."""
    registries = []
    for host, urls in sorted(mirrors.items()):
        entries = []
        for url in urls:
            parts = urlsplit(url)
            entry: dict[str, object] = {"location": parts.netloc + parts.path.rstrip("/")}
            if parts.scheme == "http":
                entry["insecure"] = True
            entries.append(entry)
        registries.append({"prefix": host, "location": host, "mirror": entries})
    return {"registry": registries}


def crio_files(mirrors: Mapping[str, Sequence[str]]) -> list[NodeFile]:
    if not mirrors:
        return []
    return [public(REGISTRIES_DROPIN, HEADER + tomli_w.dumps(registries_conf(mirrors)))]

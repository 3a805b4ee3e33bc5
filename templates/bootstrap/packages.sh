#!/bin/bash
# bake-bootstrap-packages.service: the repositories and packages (container runtime, kubelet, kubeadm,
# kubectl, pinned), unless the image is prebaked.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

install_packages_apt() {
    local -a base runtime kube hold key_urls keyrings sources
    split BAKE_BASE_PACKAGES base
    split BAKE_RUNTIME_PACKAGES runtime
    split BAKE_KUBE_PACKAGES kube
    split BAKE_HOLD_PACKAGES hold
    split BAKE_APT_KEY_URLS key_urls
    split BAKE_APT_KEYRINGS keyrings
    split BAKE_APT_STAGED_SOURCES sources
    apt_get update
    apt_get install --no-install-recommends "${base[@]}"
    install -d -m 0755 /etc/apt/keyrings
    local i src
    for i in "${!key_urls[@]}"; do
        log "fetching repository key ${key_urls[$i]}"
        fetch "${key_urls[$i]}" | gpg --dearmor --yes -o "${keyrings[$i]}"
        chmod 0644 "${keyrings[$i]}"
    done
    # Sources go live only now that their keyrings exist (a missing keyring fails every apt-get update).
    for src in "${sources[@]}"; do
        install -m 0644 "$src" "/etc/apt/sources.list.d/$(basename "$src")"
    done
    apt_get update
    apt_get install --allow-change-held-packages "${runtime[@]}" "${kube[@]}"
    apt-mark hold "${hold[@]}"
}

install_packages_dnf() {
    local -a base runtime kube repos
    split BAKE_BASE_PACKAGES base
    split BAKE_RUNTIME_PACKAGES runtime
    split BAKE_KUBE_PACKAGES kube
    split BAKE_KUBE_REPOS repos
    # EL 9 images ship curl-minimal, which conflicts with the curl package: add curl only if none is there.
    command -v curl >/dev/null || base+=(curl)
    dnf -y install "${base[@]}"
    # The kubernetes repos exclude their own packages (no accidental upgrades); lift that for this install.
    # (--setopt form: dnf5 on Fedora 41+ no longer has --disableexcludes.)
    local IFS=,
    dnf -y install "--setopt=disable_excludes=${repos[*]}" "${runtime[@]}" "${kube[@]}"
}

install_packages() {
    case $BAKE_PKG_FAMILY in
    apt) install_packages_apt ;;
    dnf) install_packages_dnf ;;
    *) die "unknown package family $BAKE_PKG_FAMILY" ;;
    esac
}

bake_start bake-bootstrap-packages
if [[ $BAKE_PACKAGE_MODE == prebaked ]]; then
    log "packages.mode is prebaked: no repositories, no package installs"
else
    step packages install_packages
fi

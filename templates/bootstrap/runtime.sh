#!/bin/bash
# bake-bootstrap-runtime.service: the container runtime configured and running, the air-gapped images
# imported (cluster.airgap), then the kubelet released and enabled.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

# "containerd github.com/containerd/containerd v1.7.24 ..." / Debian's "... 1.6.20~ds1 ..." -> major
containerd_major() {
    local text
    text=$(containerd --version 2>/dev/null) || return 0
    if [[ $text =~ [[:space:]]v?([0-9]+)\.[0-9]+\.[0-9]+ ]]; then
        echo "${BASH_REMATCH[1]}"
    fi
}

runtime_ready() {
    if [[ $BAKE_RUNTIME_SERVICE == containerd ]]; then
        local major schema
        major=$(containerd_major)
        [[ -n $major ]] || die "containerd is not installed (or its version cannot be read)"
        schema=2
        ((major >= 2)) && schema=3
        if ((major < BAKE_CONTAINERD_MIN_MAJOR)); then
            # Kubernetes 1.35 was the last release to support containerd 1.x.
            [[ $BAKE_PACKAGE_MODE == prebaked ]] ||
                die "containerd $major.x was installed, and kubelet $BAKE_KUBELET_VERSION needs containerd $BAKE_CONTAINERD_MIN_MAJOR.x: check cluster.containerdRepository"
            log "WARNING: this prebaked image has containerd $major.x; kubelet $BAKE_KUBELET_VERSION needs containerd $BAKE_CONTAINERD_MIN_MAJOR.x"
        elif ((BAKE_CONTAINERD_CONFIG_VERSION >= 3 && major < 2)); then
            log "WARNING: containerd $major.x with kubelet $BAKE_KUBELET_VERSION: this minor expects containerd 2.x (the kubelet no longer pins the pause image itself); using config schema 2"
        fi
        install -D -m 0644 "/etc/bake/containerd/config-v$schema.toml" /etc/containerd/config.toml
        log "containerd $major.x: installed config schema $schema as /etc/containerd/config.toml"
    fi
    # No reload of systemd's configuration here: cloud-init's runcmd reloaded it before the bootstrap, and
    # a package installs its unit with one. Each reload costs seconds on a slow first boot.
    systemctl enable --no-reload "$BAKE_RUNTIME_SERVICE"
    systemctl restart "$BAKE_RUNTIME_SERVICE"
    retry 60 2 "$BAKE_RUNTIME_SERVICE to answer on $BAKE_CRI_SOCKET" test -S "${BAKE_CRI_SOCKET#unix://}" ||
        die "$BAKE_RUNTIME_SERVICE did not come up (journalctl -u $BAKE_RUNTIME_SERVICE)"
}

# ---------------------------------------------------------------------------------------------------
# air gap (cluster.airgap): images and CNI manifests come from the images seed, nothing from the network

# find_images_seed: the block device of the images seed ISO, found by its volume label.
find_images_seed() {
    udevadm settle --timeout=30 >/dev/null 2>&1 || true
    blkid -L "$BAKE_IMAGES_LABEL" 2>/dev/null
}

import_archive() {
    case $BAKE_RUNTIME_SERVICE in
    containerd) ctr -n k8s.io images import "$1" ;;
    crio)
        # CRI-O has no import of its own; podman writes the same containers-storage CRI-O reads.
        command -v podman >/dev/null ||
            die "CRI-O: importing image archives needs podman (it shares containers-storage with CRI-O)"
        podman load -i "$1"
        ;;
    *) die "unknown runtime $BAKE_RUNTIME_SERVICE" ;;
    esac
}

# import_one ARCHIVE: one archive into the runtime; its name is logged when it fails (the imports run side
# by side, their output interleaved).
import_one() {
    log "importing ${1##*/} into $BAKE_RUNTIME_SERVICE"
    import_archive "$1" || {
        log "importing ${1##*/} failed"
        return 1
    }
}

# import_all ARCHIVE...: as many imports at a time as there are CPUs, each about one CPU's worth of
# decompressing and digesting. Layers that several archives share are written once: containerd makes a
# second writer of a blob wait for the first.
import_all() {
    local cpus failed=0 archive ended
    local -A running=()
    cpus=$(nproc)
    reap_one() {
        wait -n -p ended "${!running[@]}" || failed=$((failed + 1))
        unset "running[$ended]"
    }
    for archive in "$@"; do
        ((${#running[@]} < cpus)) || reap_one
        import_one "$archive" &
        running[$!]=$archive
    done
    while ((${#running[@]} > 0)); do reap_one; done
    ((failed == 0)) || die "$failed image archive(s) could not be imported into $BAKE_RUNTIME_SERVICE (see above)"
}

# warm_binaries: the binaries the next phases start (kubeadm, the kubelet, kubectl) read into the page
# cache while the imports keep the CPUs busy. On a freshly booted prebaked image none of them is cached,
# and the first start of each reads tens of megabytes from disk on the bootstrap's critical path
# (kubectl's took 3.7 s under emulation, its next start 0.9 s). kubeadm's version, which the wait phase
# checks, is asked here too.
warm_binaries() {
    local name path
    for name in kubeadm kubelet kubectl; do
        path=$(command -v "$name") || continue
        cat -- "$path" >/dev/null || true
    done
    if command -v kubeadm >/dev/null; then
        kubeadm_version >/dev/null || true
    fi
}

# present_images: the fully qualified name of every image the runtime holds, one a line.
present_images() {
    case $BAKE_RUNTIME_SERVICE in
    containerd) ctr -n k8s.io images ls -q ;;
    crio) crictl images | awk 'NR > 1 && $2 != "<none>" { print $1 ":" $2 }' ;;
    esac
}

airgap_images() {
    local -a archives manifests
    split BAKE_IMAGE_ARCHIVES archives
    split BAKE_CNI_MANIFESTS manifests
    local dev src name mounted=no
    if dev=$(find_images_seed) && [[ -n $dev ]]; then
        install -d -m 0700 "$IMAGES_MOUNT"
        mountpoint -q "$IMAGES_MOUNT" || mount -o ro "$dev" "$IMAGES_MOUNT"
        mounted=yes
        src=$IMAGES_MOUNT
        log "images seed $BAKE_IMAGES_LABEL is $dev"
    elif [[ -n $BAKE_IMAGES_URL ]]; then
        log "no disk labelled $BAKE_IMAGES_LABEL: fetching the images seed from $BAKE_IMAGES_URL"
        src=$IMAGES_FETCH_DIR
        install -d -m 0700 "$src" "$src/cni"
        for name in "${archives[@]}" "${manifests[@]}"; do
            [[ -s $src/$name ]] && continue
            fetch -o "$src/$name.tmp" "$BAKE_IMAGES_URL/$name"
            mv "$src/$name.tmp" "$src/$name"
        done
    else
        die "no images seed: attach the ISO labelled $BAKE_IMAGES_LABEL (images/$BAKE_ARCH/images.iso of the bake) or set cluster.seed.httpBaseUrl"
    fi
    local -a paths=()
    for name in "${archives[@]}"; do
        [[ -f $src/$name ]] || die "the images seed has no $name"
        paths+=("$src/$name")
    done
    local warm
    warm_binaries &
    warm=$!
    import_all "${paths[@]}"
    wait "$warm" || true
    install -d -m 0700 "$CNI_WORK_DIR"
    for name in "${manifests[@]}"; do
        install -m 0600 "$src/$name" "$CNI_WORK_DIR/${name##*/}"
    done
    if [[ $mounted == yes ]]; then
        umount "$IMAGES_MOUNT"
    fi
    rm -rf "$IMAGES_FETCH_DIR"
}

# check_images: every image this node runs must be in the runtime before kubeadm (nothing can be pulled).
check_images() {
    local -a wanted missing=()
    split BAKE_IMAGES wanted
    local have ref
    have=$(present_images) || die "cannot list the images of $BAKE_RUNTIME_SERVICE"
    for ref in "${wanted[@]}"; do
        grep -qxF -- "$ref" <<<"$have" || missing+=("$ref")
    done
    if ((${#missing[@]} > 0)); then
        die "${#missing[@]} image(s) this node needs are not in $BAKE_RUNTIME_SERVICE after importing the images seed: ${missing[*]}"
    fi
    log "all ${#wanted[@]} images this node needs are in $BAKE_RUNTIME_SERVICE"
}

# The prep phase held the kubelet (masked in /run) until now; also after an interrupted run of this
# boot that held it and configured the runtime.
release_kubelet() {
    if [[ -L $KUBELET_RUNTIME_MASK ]]; then
        systemctl unmask --runtime --no-reload kubelet.service
    fi
}

# Without a reload either: whoever starts the kubelet next reloads first (kubeadm's kubelet-start phase,
# cmd/kubeadm/app/util/initsystem; an etcd member's etcd_member_start), and picks up the unmask then.
kubelet_enabled() {
    systemctl enable --no-reload kubelet.service ||
        die "kubelet.service cannot be enabled: is it installed? (packages.mode=$BAKE_PACKAGE_MODE)"
}

bake_start bake-bootstrap-runtime
step runtime runtime_ready
if [[ $BAKE_AIRGAP == yes ]]; then
    step images airgap_images
    check_images
fi
release_kubelet
step kubelet-enable kubelet_enabled

#!/bin/bash
# bake-bootstrap-prep.service: the host before any package or runtime: clock, kubeadm config, kernel
# modules and sysctls, swap off, SELinux, firewall.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

# The certificates are only valid from their NotBefore: with a clock before it (no RTC, time not yet
# synchronised), TLS with them fails. Say so plainly; the run goes on and retries.
check_clock() {
    [[ -n $BAKE_CERTS_NOT_BEFORE ]] || return 0
    local now
    printf -v now '%(%s)T' -1
    if ((now < BAKE_CERTS_NOT_BEFORE)); then
        log "WARNING: the clock ($(date -u +%Y-%m-%dT%H:%M:%SZ)) is before this node's certificates are valid ($(date -u -d "@$BAKE_CERTS_NOT_BEFORE" +%Y-%m-%dT%H:%M:%SZ)): TLS fails until the time is right; check time synchronisation (timedatectl, chronyc tracking)"
    fi
}

# The kubelet must not run before the container runtime is configured: a package's postinst (or a
# prebaked image) can start it while the etcd drop-in and static pod are already in place, and it would
# run the pod on a runtime with the wrong cgroup driver and sandbox image. It is held (masked in /run,
# which a reboot clears) until the runtime phase has configured the runtime and releases it.
# Stopped first (a stopped unit is not restarted by its Restart=; exit 5: no kubelet installed yet), then
# masked without a reload of systemd's configuration, which costs seconds on a slow first boot: whatever
# would start it next reloads first and finds it masked (a package's postinst), or starts it after the
# release (kubeadm).
hold_kubelet() {
    local rc=0
    systemctl stop kubelet.service 2>/dev/null || rc=$?
    ((rc == 0 || rc == 5)) || log "warning: cannot stop kubelet.service (systemctl exit $rc)"
    systemctl mask --runtime --no-reload kubelet.service || log "warning: cannot mask kubelet.service"
    log "kubelet held until the container runtime is configured"
}

kernel_modules_and_sysctl() {
    modprobe overlay
    modprobe br_netfilter
    sysctl --system >/dev/null || log "warning: sysctl --system reported errors; applying $SYSCTL_FILE alone"
    sysctl -p "$SYSCTL_FILE"
}

swap_off() {
    swapoff -a
    # Comment out swap entries in fstab and mask swap.target, so no swap comes back at the next boot
    # (which is when the mask matters: systemd reads it then, or at the kubelet's enable, not at once).
    sed -E -i '/^[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]/ s/^/#bake-swap-off# /' /etc/fstab
    systemctl mask --no-reload swap.target
}

selinux_permissive() {
    if command -v getenforce >/dev/null && [[ $(getenforce) == Enforcing ]]; then
        setenforce 0
    fi
    if [[ -f /etc/selinux/config ]]; then
        sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config
    fi
}

open_firewall() {
    local -a tcp udp protocols
    split BAKE_FIREWALL_TCP tcp
    split BAKE_FIREWALL_UDP udp
    split BAKE_FIREWALL_PROTOCOLS protocols
    local p
    if command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then
        for p in "${tcp[@]}"; do firewall-cmd --permanent --add-port="$p/tcp"; done
        for p in "${udp[@]}"; do firewall-cmd --permanent --add-port="$p/udp"; done
        for p in "${protocols[@]}"; do firewall-cmd --permanent --add-protocol="$p"; done
        firewall-cmd --reload
    elif command -v ufw >/dev/null && ufw status | grep -q '^Status: active'; then
        for p in "${tcp[@]}"; do ufw allow "${p/-/:}/tcp"; done
        for p in "${udp[@]}"; do ufw allow "${p/-/:}/udp"; done
        for p in "${protocols[@]}"; do
            ufw allow proto "$p" from any to any || log "warning: ufw cannot open protocol $p"
        done
    else
        log "no active firewalld or ufw: no ports to open"
    fi
}

bake_start bake-bootstrap-prep
check_clock
kubeadm_config_ready
if [[ ! -e "$STEPS_DIR/runtime.done" ]]; then
    hold_kubelet
fi
step modules-sysctl kernel_modules_and_sysctl
step swap-off swap_off
if [[ $BAKE_SELINUX_PERMISSIVE == yes ]]; then
    step selinux-permissive selinux_permissive
fi
step firewall open_firewall

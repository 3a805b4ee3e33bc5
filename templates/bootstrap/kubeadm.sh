#!/bin/bash
# bake-bootstrap-kubeadm.service: kubeadm init or join (an etcd member: its kubelet with the baked static
# pod), after a clean reset of a half-done earlier try; on the first control plane, the join token kept
# alive and kube-vip moved to admin.conf.
#   kubeadm.sh            the phase
#   kubeadm.sh check      kubeadm is installed, at the cluster's version (before the waits: ExecStartPre=
#                         of bake-bootstrap-wait.service, so a node without kubeadm fails without waiting)
#   kubeadm.sh join-token the join token check of bake-join-token.service (cluster.join: token)
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

need_kubeadm() {
    [[ $BAKE_ROLE != etcd ]] || return 0
    command -v kubeadm >/dev/null || die "kubeadm is not installed (packages.mode=$BAKE_PACKAGE_MODE)"
    local have
    have=$(kubeadm_version)
    [[ ${have#v} == "$BAKE_KUBERNETES_VERSION" ]] ||
        log "warning: kubeadm ${have:-?} is installed; kubeadm must be the cluster's version, $BAKE_KUBERNETES_VERSION"
}

# kubeadm reset deletes /etc/kubernetes/pki, the kubeconfigs and /etc/kubernetes/manifests
# (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go), i.e. the baked PKI too. So the baked files are
# kept here once, before the first kubeadm run, and put back after every reset.
keep_baked_files() {
    local -a files
    split BAKE_KEEP_FILES files
    install -d -m 0700 "${BAKED_FILES%/*}"
    (umask 077 && printf '%s\0' "${files[@]#/}" | tar -C / --null -T - -cpf "$BAKED_FILES.tmp")
    mv "$BAKED_FILES.tmp" "$BAKED_FILES"
    log "kept ${#files[@]} baked files for a clean retry"
}

# A kubeadm run that did not finish leaves static pods, an etcd member, kubelet.conf, certificates
# of its own...: the next try must start from the node as it was baked, or it fails the same way.
reset_half_done_kubeadm() {
    log "a previous kubeadm $1 did not finish: resetting this node (kubeadm reset), then restoring the baked files"
    kubeadm reset -f --cri-socket "$BAKE_CRI_SOCKET" || log "warning: kubeadm reset reported errors; going on"
    [[ -s $BAKED_FILES ]] || die "$BAKED_FILES is missing: cannot restore the baked files; re-seed this node"
    tar -C / -xpf "$BAKED_FILES"
    # the pod network applied beside the half-done run went with the cluster's state
    rm -f "$STEPS_DIR/cni.done"
    log "restored the baked files kubeadm reset deleted"
    if [[ $1 == join && -r $ADMIN_CONF ]]; then
        # kubeadm join refuses a Node of this name that is Ready: the earlier attempt may have
        # registered it. A control plane can remove it (kubeadm's own advice); it registers again.
        kubectl_retry delete node "$BAKE_NODE_NAME" --ignore-not-found --wait=true
    fi
}

# run_kubeadm init|join: after a half-done run, reset first; then run kubeadm, its output kept aside
# (0600) to recognise kubeadm's refusal of a Node that is still registered and Ready. `kubeadm init`
# otherwise prints the bootstrap token twice ("Using token", the join command) into the log and the
# journal: --skip-token-print withholds it (allowed beside --config, as every --skip-* flag).
run_kubeadm() {
    local -a cmd=(kubeadm "$1" --config "$BAKE_KUBEADM_CONFIG")
    if [[ $1 == init ]]; then
        cmd+=(--skip-token-print)
    fi
    if [[ -e "$STEPS_DIR/kubeadm.attempted" ]]; then
        reset_half_done_kubeadm "$1"
    fi
    : >"$STEPS_DIR/kubeadm.attempted"
    log "running: ${cmd[*]}"
    local out="$STATE_DIR/kubeadm-$1.out"
    (umask 077 && : >"$out")
    [[ $1 != init ]] || cni_beside_start "$out"
    if ! "${cmd[@]}" 2>&1 | tee "$out"; then
        cni_beside_end failed
        if grep -q 'already exists in the cluster' "$out"; then
            log "kubeadm $1: node $BAKE_NODE_NAME is still registered and Ready from an earlier attempt; its kubelet is stopped now, so the control plane marks it NotReady within about a minute, and a later attempt joins"
        fi
        return 1
    fi
    cni_beside_end ok
}

# The pod network applied beside `kubeadm init` (cni.sh beside-kubeadm says when and why).
CNI_BESIDE_PID=
cni_beside_start() {
    [[ $BAKE_CNI != none && ! -e "$STEPS_DIR/cni.done" ]] || return 0
    rm -f "$CNI_BESIDE_STARTED"
    "$PHASE_DIR/cni.sh" beside-kubeadm "$1" &
    CNI_BESIDE_PID=$!
}

# cni_beside_end ok|failed: after kubeadm, wait for an apply under way; stop one still waiting for its cue,
# and any after a failed kubeadm (a reset follows, and the cni phase applies after the next run).
cni_beside_end() {
    [[ -n $CNI_BESIDE_PID ]] || return 0
    if [[ $1 == ok && -e $CNI_BESIDE_STARTED ]]; then
        wait "$CNI_BESIDE_PID" || log "the pod network could not be applied beside kubeadm: the cni phase applies it"
    else
        kill "$CNI_BESIDE_PID" 2>/dev/null || true
        wait "$CNI_BESIDE_PID" 2>/dev/null || true
    fi
    CNI_BESIDE_PID=
}

kube_vip_to_admin_conf() {
    # kube-vip starts with super-admin.conf (admin.conf has no rights before kubeadm init binds
    # kubeadm:cluster-admins); afterwards it must use admin.conf, as the kube-vip docs say.
    [[ -n $BAKE_KUBE_VIP_MANIFEST && -f $BAKE_KUBE_VIP_MANIFEST ]] || return 0
    sed -i 's#/etc/kubernetes/super-admin.conf#/etc/kubernetes/admin.conf#g' "$BAKE_KUBE_VIP_MANIFEST"
}

# cluster.join: token, first control plane. Nodes added later join with the bundle's bootstrap token, so
# it must outlive the TTL that started at kubeadm init: when the token the baked InitConfiguration lists
# is missing (expired tokens are deleted by kube-controller-manager) or expires within
# BAKE_JOIN_TOKEN_REFRESH_SECONDS, it is created again from that file, with the profile's TTL. The token
# itself is never logged. Run after kubeadm init and by $JOIN_TOKEN_TIMER.
JOIN_TOKEN_SECRET=""
read_join_token() {
    JOIN_TOKEN_SECRET=$(kubectl_admin -n kube-system get secret "bootstrap-token-$BAKE_JOIN_TOKEN_ID" \
        --ignore-not-found -o 'jsonpath={.metadata.name}{" "}{.data.expiration}')
}

recreate_join_token() {
    kubeadm token delete "$BAKE_JOIN_TOKEN_ID" >/dev/null 2>&1 || true
    kubeadm token create --config "$BAKE_KUBEADM_CONFIG" >/dev/null
}

ensure_join_token() {
    retry "$BAKE_KUBECTL_RETRY_SECONDS" 10 "kubectl to read bootstrap token $BAKE_JOIN_TOKEN_ID" read_join_token
    local name="" expiration="" left
    read -r name expiration <<<"$JOIN_TOKEN_SECRET" || true
    if [[ -n $name && -z $expiration ]]; then
        return 0 # tokenTTL 0: the token never expires
    elif [[ -n $name ]]; then
        left=$(($(date -u -d "$(base64 -d <<<"$expiration")" +%s) - $(date -u +%s)))
        ((left > BAKE_JOIN_TOKEN_REFRESH_SECONDS)) && return 0
        log "bootstrap token $BAKE_JOIN_TOKEN_ID expires in ${left}s: creating it again with the profile's TTL"
    else
        log "bootstrap token $BAKE_JOIN_TOKEN_ID does not exist (expired?): creating it again with the profile's TTL"
    fi
    retry "$BAKE_KUBECTL_RETRY_SECONDS" 10 "kubeadm to create bootstrap token $BAKE_JOIN_TOKEN_ID" recreate_join_token
    log "bootstrap token $BAKE_JOIN_TOKEN_ID is valid again"
}

join_token_timer_on() { systemctl enable --now "$JOIN_TOKEN_TIMER"; }

etcd_member_start() {
    systemctl daemon-reload
    systemctl restart kubelet
}

case ${1:-} in
check)
    bake_start bake-bootstrap-wait
    need_kubeadm
    exit 0
    ;;
join-token) # $JOIN_TOKEN_TIMER, on the first control plane once init is done
    bake_start bake-join-token
    [[ -n $BAKE_JOIN_TOKEN_ID ]] || die "join-token: this node keeps no bootstrap token (cluster.join is $BAKE_JOIN)"
    kubeadm_config_ready
    ensure_join_token
    exit 0
    ;;
"") ;;
*)
    echo "usage: $0 [check|join-token]" >&2
    exit 2
    ;;
esac

bake_start bake-bootstrap-kubeadm
kubeadm_config_ready
case $BAKE_ROLE in
init)
    step keep-baked-files keep_baked_files
    step kubeadm-init run_kubeadm init
    if [[ -n $BAKE_JOIN_TOKEN_ID ]]; then
        ensure_join_token
        step join-token-timer join_token_timer_on
    fi
    step kube-vip-admin-conf kube_vip_to_admin_conf
    ;;
join-control-plane | worker)
    step keep-baked-files keep_baked_files
    step kubeadm-join run_kubeadm join
    ;;
etcd)
    step etcd-kubelet etcd_member_start
    ;;
*)
    die "unknown role $BAKE_ROLE"
    ;;
esac

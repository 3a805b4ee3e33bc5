#!/bin/bash
# bake-bootstrap-wait.service: what must hold before kubeadm runs on this node, waited for (bounded):
# the external etcd members (first control plane), the control-plane endpoint and the control planes
# that join before this one (joining nodes), and a join credential that has not expired.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

endpoint_ready() { curl -gkfsS --max-time 10 -o /dev/null "https://$BAKE_API_ENDPOINT/readyz"; }

wait_for_endpoint() {
    retry "$BAKE_WAIT_ENDPOINT_SECONDS" 10 "the API server at https://$BAKE_API_ENDPOINT/readyz" endpoint_ready ||
        die "the control-plane endpoint $BAKE_API_ENDPOINT did not become ready; will retry"
}

pod_ready() {
    local status
    status=$(kubectl_admin -n kube-system get pod "$1" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) || return 1
    [[ $status == True ]]
}

peer_joined() {
    local peer=$1 component
    local -a components
    split BAKE_JOIN_AFTER_PODS components
    kubectl_admin get node "$peer" >/dev/null 2>&1 || return 1
    for component in "${components[@]}"; do
        pod_ready "$component-$peer" || return 1
    done
}

wait_for_earlier_control_planes() {
    local -a peers
    split BAKE_JOIN_AFTER peers
    [[ ${#peers[@]} -gt 0 ]] || return 0
    [[ -r $ADMIN_CONF ]] || die "$ADMIN_CONF is missing: cannot check that earlier control planes joined"
    local peer
    for peer in "${peers[@]}"; do
        retry "$BAKE_WAIT_PEERS_SECONDS" 15 "control plane $peer to be a Ready member" peer_joined "$peer" ||
            die "control plane $peer has not joined: joining now would risk etcd quorum; will retry"
        log "control plane $peer has joined"
    done
}

# etcd_healthy URL: the member answers /health over TLS to this control plane's own etcd client
# certificate (the one kube-apiserver will use), and says it is healthy.
etcd_healthy() {
    local body
    body=$(curl -gfsS --max-time 10 --cacert "$BAKE_ETCD_CA" --cert "$BAKE_ETCD_CERT" --key "$BAKE_ETCD_KEY" \
        "$1/health") || return 1
    [[ $body == *'"health":"true"'* ]]
}

wait_for_external_etcd() {
    local -a endpoints
    split BAKE_ETCD_ENDPOINTS endpoints
    local url
    for url in "${endpoints[@]}"; do
        retry "$BAKE_WAIT_ETCD_SECONDS" 10 "external etcd member $url/health (apiserver-etcd-client certificate)" \
            etcd_healthy "$url" ||
            die "external etcd member $url is not healthy: kubeadm init would fail its etcd preflight; will retry"
        log "external etcd member $url is healthy"
    done
}

# cluster.join: certificate. The node joins with its own credential, valid for the join window from the
# bake: past it kubeadm's discovery fails with a TLS error, so say what happened and what to do.
check_join_credential() {
    [[ -n $BAKE_JOIN_NOT_AFTER ]] || return 0
    local now
    printf -v now '%(%s)T' -1
    if ((now >= BAKE_JOIN_NOT_AFTER)); then
        die "this node's join credential $BAKE_JOIN_CREDENTIAL expired at $(date -u -d "@$BAKE_JOIN_NOT_AFTER" +%Y-%m-%dT%H:%M:%SZ) (cluster.joinWindow from the bake): bake again (it issues a new one) and re-seed this node, or check the clock"
    fi
}

bake_start bake-bootstrap-wait
case $BAKE_ROLE in
init)
    if [[ -n $BAKE_ETCD_ENDPOINTS && ! -e "$STEPS_DIR/kubeadm-init.done" ]]; then
        wait_for_external_etcd
    fi
    ;;
join-control-plane)
    if [[ ! -e "$STEPS_DIR/kubeadm-join.done" ]]; then
        check_join_credential
        wait_for_endpoint
        wait_for_earlier_control_planes
    fi
    ;;
worker)
    if [[ ! -e "$STEPS_DIR/kubeadm-join.done" ]]; then
        check_join_credential
        wait_for_endpoint
    fi
    ;;
etcd) ;;
*) die "unknown role $BAKE_ROLE" ;;
esac

#!/bin/bash
# bake-renew-certs: renew this node's kubeadm leaf certificates once they are inside the renewal window,
# then restart the static pods that use them, one at a time (plain shell, shipped by bake; run by
# bake-renew-certs.service from bake-renew-certs.timer on control planes and external etcd members).
#
# Every value comes from the env file the baker writes (each value shell-quoted). The script reads each
# certificate's NotAfter (openssl x509 -checkend); when none is due it exits 0 and changes nothing. When
# some are due it runs `kubeadm certs renew all` (control plane) or `kubeadm certs renew <cert>` for the
# member's etcd certificates, with the node's renewal config (the profile's validity period and key
# algorithm). kubeadm signs with the CA key on this node: a certificate whose CA key is not here (the
# etcd CA with external etcd) is reported, never renewed; the script itself never reads a CA key.
# A control plane's apiserver-etcd-client with external etcd is such a certificate, by design: it is
# renewed by re-bake only, and once inside the window the journal says so at warning priority, with
# its expiry and the fix.
# Each static pod is restarted by moving its manifest out of the kubelet's directory, waiting for its
# container to stop, moving it back and waiting for a new container and its health endpoint (bounded).
# Output goes to the journal of the unit.
set -Eeuo pipefail
umask 022
export LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

readonly ENV_FILE=/etc/bake/renew-certs.env

log() { printf 'bake-renew-certs: %s\n' "$*"; }
# warn: journald's warning priority (sd-daemon's <4> prefix, read from the unit's stdout)
warn() { printf '<4>bake-renew-certs: WARNING: %s\n' "$*"; }
die() {
    log "ERROR: $*"
    exit 1
}
trap 'log "FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[[ -r $ENV_FILE ]] || die "$ENV_FILE is missing: this node was not seeded by bake"
# shellcheck source=/dev/null
. "$ENV_FILE"

split() { read -r -a "$2" <<<"${!1}"; }

# not_after FILE: the NotAfter of a certificate file, or of a kubeconfig's client certificate.
cert_pem() {
    if [[ $1 == *.conf ]]; then
        sed -n 's/^ *client-certificate-data: *//p' "$1" | head -n 1 | base64 -d
    else
        cat "$1"
    fi
}
not_after() { cert_pem "$1" | openssl x509 -noout -enddate | sed 's/^notAfter=//'; }
# due FILE: the certificate expires within the window (openssl's -checkend fails then)
due() { ! cert_pem "$1" | openssl x509 -noout -checkend "$BAKE_RENEW_BEFORE_SECONDS" >/dev/null; }

RENEW=()
CANNOT=()
# find_due: every baked certificate (name=file=CA key file) inside the window, renewable or not here
find_due() {
    local -a entries
    split BAKE_RENEW_CERTS entries
    local entry name file ca_key rest
    for entry in "${entries[@]}"; do
        name=${entry%%=*}
        rest=${entry#*=}
        file=${rest%%=*}
        ca_key=${rest#*=}
        if [[ ! -f $file ]]; then
            log "$name: $file is not on this node; skipped"
            continue
        fi
        if ! due "$file"; then
            log "$name: valid until $(not_after "$file")"
            continue
        fi
        if [[ -e $ca_key ]]; then
            log "$name: expires $(not_after "$file"), inside the renewal window: renewing"
            RENEW+=("$name")
        elif [[ $name == apiserver-etcd-client ]]; then
            warn "$name ($file) expires $(not_after "$file"), inside the renewal window, and is renewed by" \
                "re-bake only: this control plane does not hold the etcd CA key ($ca_key; external etcd)." \
                "Fix: run bake again (it re-issues $name) and re-seed this node; or by hand, copy the" \
                "bundle's nodes/$BAKE_RENEW_NODE/$name.crt and $name.key to ${file%/*}/ (0644 / 0600) and" \
                "restart kube-apiserver (move $BAKE_RENEW_MANIFESTS_DIR/kube-apiserver.yaml out of that" \
                "directory until its container stops, then back)"
            CANNOT+=("$name")
        else
            warn "$name ($file) expires $(not_after "$file"), inside the renewal window, but its CA key $ca_key is not on this node"
            CANNOT+=("$name")
        fi
    done
}

renew() {
    if [[ $BAKE_RENEW_ALL == yes ]]; then
        log "running: kubeadm certs renew all --config $BAKE_RENEW_CONFIG"
        kubeadm certs renew all --config "$BAKE_RENEW_CONFIG"
    else
        local name
        for name in "${RENEW[@]}"; do
            log "running: kubeadm certs renew $name --config $BAKE_RENEW_CONFIG"
            kubeadm certs renew "$name" --config "$BAKE_RENEW_CONFIG"
        done
    fi
}

containers() { crictl --runtime-endpoint "$BAKE_RENEW_CRI_SOCKET" ps --name "^$1\$" --state running -q; }

gone() {
    local ids
    ids=$(containers "$1") || return 1
    [[ -z $ids ]]
}

# back POD OLD: a container other than OLD runs and the pod's health endpoint answers
back() {
    local ids
    ids=$(containers "$1") || return 1
    [[ -n $ids && $ids != "$2" ]] || return 1
    [[ -z $3 ]] || curl -gkfsS --max-time 10 -o /dev/null "$3"
}

wait_until() {
    local what=$1 start=$SECONDS
    shift
    until "$@"; do
        if ((SECONDS - start >= BAKE_RENEW_WAIT_SECONDS)); then
            log "gave up after ${BAKE_RENEW_WAIT_SECONDS}s: $what"
            return 1
        fi
        sleep 2
    done
}

# restart_pod NAME URL: one static pod, through its manifest (the kubelet stops the pod when its
# manifest goes and starts it again when it comes back); the manifest is always put back.
restart_pod() {
    local pod=$1 url=$2
    local manifest="$BAKE_RENEW_MANIFESTS_DIR/$pod.yaml" parked="$BAKE_RENEW_PARK_DIR/$pod.yaml" old
    if [[ ! -f $manifest ]]; then
        log "$pod: no manifest at $manifest; not restarted"
        return 0
    fi
    command -v crictl >/dev/null || die "crictl is not installed: restart $pod (and the pods after it) by hand to load the renewed certificates"
    old=$(containers "$pod" || true)
    install -d -m 0700 "$BAKE_RENEW_PARK_DIR"
    mv "$manifest" "$parked"
    log "$pod: manifest moved aside; waiting for its container to stop"
    local stopped=0
    wait_until "$pod to stop" gone "$pod" || stopped=$?
    mv "$parked" "$manifest"
    ((stopped == 0)) || return 1
    log "$pod: manifest back; waiting for a new container${url:+ and $url}"
    wait_until "$pod to run again and answer" back "$pod" "$old" "$url" || return 1
    log "$pod: restarted"
}

restart_pods() {
    local -a pods
    split BAKE_RENEW_PODS pods
    local entry
    for entry in "${pods[@]}"; do
        restart_pod "${entry%%=*}" "${entry#*=}" || die "${entry%%=*} did not come back within ${BAKE_RENEW_WAIT_SECONDS}s with the renewed certificates: see its container's logs (crictl logs)"
    done
}

# A manifest left aside by an interrupted run goes back first.
restore_parked() {
    local parked
    for parked in "$BAKE_RENEW_PARK_DIR"/*.yaml; do
        [[ -e $parked ]] || continue
        log "putting back $(basename "$parked"), left aside by an interrupted run"
        mv "$parked" "$BAKE_RENEW_MANIFESTS_DIR/"
    done
}

# systemd stops the unit with SIGTERM: the manifest of a pod being restarted goes back first.
trap 'exit 143' TERM INT
trap restore_parked EXIT
log "node $BAKE_RENEW_NODE ($BAKE_RENEW_ROLE): renewing what expires within ${BAKE_RENEW_BEFORE_SECONDS}s"
restore_parked
find_due
if ((${#RENEW[@]} > 0)); then
    if ((BAKE_RENEW_STAGGER_SECONDS > 0)); then
        log "waiting ${BAKE_RENEW_STAGGER_SECONDS}s first, so that nodes renewing on the same day restart their pods at different times"
        sleep "$BAKE_RENEW_STAGGER_SECONDS"
    fi
    renew
    restart_pods
    log "renewed: ${RENEW[*]}"
else
    log "nothing to renew"
fi
if ((${#CANNOT[@]} > 0)); then
    die "not renewed here: ${CANNOT[*]} (signed by a CA whose key stays off this node): bake again (it re-issues leaves inside its window) and put the new files on this node"
fi

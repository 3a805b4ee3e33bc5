#!/bin/bash
# bake first-boot bootstrap: the library every phase script sources (plain shell, shipped by bake).
#
# The bootstrap is one systemd unit per phase (bake-bootstrap-<phase>.service, ordered with
# Requires=/After=), started in order by bake-bootstrap.service, which retries a failed run. Every value
# comes from the env file the baker writes, each value shell-quoted: no profile string is part of this
# code. Each step records a marker under $STEPS_DIR once it succeeded (or is idempotent by nature), so a
# reboot at any point resumes where it stopped. Output goes to the journal of the phase's unit and to
# $LOG_FILE, which keeps every phase's lines in one place.
# shellcheck disable=SC2034 # the constants are for the scripts that source this file
set -Eeuo pipefail
umask 022
export LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

readonly ENV_FILE=/etc/bake/bootstrap.env
readonly STATE_DIR=/var/lib/bake
readonly STEPS_DIR=/var/lib/bake/steps
readonly DONE_FILE=/var/lib/bake/bootstrap.done
readonly LOG_FILE=/var/log/bake/bootstrap.log
readonly SAVED_CONFIG_DIR=/var/lib/bake/kubeadm
readonly CAPI_SENTINEL=/run/cluster-api/bootstrap-success.complete
readonly ADMIN_CONF=/etc/kubernetes/admin.conf
readonly SYSCTL_FILE=/etc/sysctl.d/k8s.conf
readonly CNI_WORK_DIR=/var/lib/bake/cni
# written by cni.sh beside `kubeadm init` when it starts applying the pod network (kubeadm.sh waits for it)
readonly CNI_BESIDE_STARTED=/run/bake/cni-beside-kubeadm
readonly IMAGES_MOUNT=/run/bake/images-seed
readonly IMAGES_FETCH_DIR=/var/lib/bake/images-fetch
readonly BAKED_FILES=/var/lib/bake/baked-files.tar
readonly ATTEMPTS_FILE=/run/bake/bootstrap.attempts
readonly KUBEADM_VERSION_FILE=/run/bake/kubeadm-version
readonly GIVE_UP_STATUS=75
readonly UNIT=bake-bootstrap.service
readonly JOIN_TOKEN_TIMER=bake-join-token.timer
# The phases in their order; phase P runs as bake-bootstrap-P.service from $PHASE_DIR/P.sh.
readonly PHASES=(prep packages runtime wait kubeadm cni)
readonly PHASE_DIR=/usr/local/lib/bake/bootstrap
# kubelet masked in /run (a reboot clears it) until the container runtime is configured (prep, runtime)
readonly KUBELET_RUNTIME_MASK=/run/systemd/system/kubelet.service

NAME=bake-bootstrap
TEE_PID=

# The time from bash's own printf, in UTC whatever the host's zone: a `date` per line is a process start,
# and those cost on a slow first boot.
log() {
    local TZ=UTC0
    printf '%(%Y-%m-%dT%H:%M:%SZ)T %s[%s]: %s\n' -1 "$NAME" "$$" "$*"
}
die() {
    log "ERROR: $*"
    exit 1
}

# flush_log: the last lines must reach the log and the journal before the script ends: systemd stops
# what is left of the unit (tee among it) as soon as the script exits.
flush_log() {
    exec >&- 2>&-
    if [[ -n $TEE_PID ]]; then
        wait "$TEE_PID" 2>/dev/null || true
    fi
}

# bake_start NAME: the log (0600 in a 0700 directory from its first byte: it keeps what kubeadm, kubectl
# and the CNI tools print; a wider log left by an earlier version is narrowed before use), the state
# directory (kubeadm's output and the baked PKI kept for retries: 0700 too), then the env file. The
# driver, which runs first at every boot, sets them up; a phase does only when they are missing (tests
# of bash's own, no process: each one started costs on a slow first boot).
bake_start() {
    if [[ $1 == "${UNIT%.service}" || ! -d $STEPS_DIR || ! -f $LOG_FILE ]]; then
        install -d -m 0700 "${LOG_FILE%/*}" "$STATE_DIR" "$STEPS_DIR"
        (umask 077 && : >>"$LOG_FILE")
        chmod 0600 "$LOG_FILE"
    fi
    exec > >(tee -a "$LOG_FILE") 2>&1
    TEE_PID=$!
    trap flush_log EXIT
    bake_env "$1"
}

# bake_env NAME: the name in the log lines, the failure trap and the env file; alone for a script that a
# phase runs beside itself, whose output goes where the phase's does already.
bake_env() {
    NAME=$1
    trap 'log "FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
    [[ -r $ENV_FILE ]] || die "$ENV_FILE is missing: this node was not seeded by bake"
    # shellcheck source=/dev/null
    . "$ENV_FILE"
}

# split NAME ARRAY: a space-separated env value into an array (no globbing: apt versions hold '*').
split() { read -r -a "$2" <<<"${!1}"; }

# step NAME FUNCTION...: run once; the marker is written only after the function succeeded.
step() {
    local name=$1
    shift
    if [[ -e "$STEPS_DIR/$name.done" ]]; then
        log "step $name: already done"
        return 0
    fi
    log "step $name: start"
    "$@"
    : >"$STEPS_DIR/$name.done"
    log "step $name: done"
}

# retry SECONDS DELAY WHAT COMMAND...: bounded retries with a clear give-up message.
retry() {
    local limit=$1 delay=$2 what=$3 start=$SECONDS
    shift 3
    until "$@"; do
        if ((SECONDS - start >= limit)); then
            log "giving up after ${limit}s: $what"
            return 1
        fi
        log "waiting for $what (retry in ${delay}s)"
        sleep "$delay"
    done
}

fetch() { curl -fsSL --retry 5 --retry-delay 5 --connect-timeout 20 "$@"; }

kubectl_admin() { kubectl --kubeconfig "$ADMIN_CONF" "$@"; }

# kubeadm_version: what `kubeadm version -o short` says, asked once a boot: the runtime phase asks while
# the images import, the wait phase reads the answer (a Go binary's start takes a second under emulation).
kubeadm_version() {
    if [[ ! -s $KUBEADM_VERSION_FILE ]]; then
        local have
        have=$(kubeadm version -o short 2>/dev/null) || return 0
        mkdir -p "${KUBEADM_VERSION_FILE%/*}"
        printf '%s\n' "$have" >"$KUBEADM_VERSION_FILE.$$"
        mv -f "$KUBEADM_VERSION_FILE.$$" "$KUBEADM_VERSION_FILE"
    fi
    printf '%s\n' "$(<"$KUBEADM_VERSION_FILE")"
}

# kubectl_retry ARGS...: kubectl through the endpoint (a VIP can move, an API server restart): retried.
kubectl_retry() { retry "$BAKE_KUBECTL_RETRY_SECONDS" 10 "kubectl $*" kubectl_admin "$@"; }

# /run does not survive a reboot: keep the kubeadm config under $SAVED_CONFIG_DIR and restore it.
kubeadm_config_ready() {
    [[ -n $BAKE_KUBEADM_CONFIG ]] || return 0
    local saved
    saved="$SAVED_CONFIG_DIR/${BAKE_KUBEADM_CONFIG##*/}"
    if [[ -s $BAKE_KUBEADM_CONFIG ]]; then
        if ! cmp -s "$BAKE_KUBEADM_CONFIG" "$saved"; then
            install -d -m 0700 "$SAVED_CONFIG_DIR"
            cp -p "$BAKE_KUBEADM_CONFIG" "$saved"
        fi
    elif [[ -s $saved ]]; then
        log "restoring $BAKE_KUBEADM_CONFIG from $saved"
        install -d -m 0755 "${BAKE_KUBEADM_CONFIG%/*}"
        cp -p "$saved" "$BAKE_KUBEADM_CONFIG"
    else
        die "$BAKE_KUBEADM_CONFIG is missing and no saved copy exists: re-seed this node"
    fi
}

#!/bin/bash
# bake-bootstrap: first-boot bootstrap of a kubeadm node, run by bake-bootstrap.service at every boot
# until /var/lib/bake/bootstrap.done exists (plain shell, shipped by bake; lib.sh says how it is built).
#
# It starts the last phase unit, whose Requires=/After= chain runs every phase in order (each phase once
# per boot: a phase that succeeded stays active). A failed phase fails this run; systemd restarts it
# (Restart=on-failure) with a growing delay, a bounded number of times per boot, and the next run starts
# at the failed phase. Once every phase ran, the node is marked done.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

# Attempts of this boot: systemd restarts a failed run (Restart=on-failure); each restart waits
# longer, and after BAKE_RETRY_MAX_ATTEMPTS failures the run gives up with GIVE_UP_STATUS, which the
# unit's RestartPreventExitStatus= turns into a failed unit (until a reboot or a manual restart).
ATTEMPT=1

start_attempt() {
    mkdir -p "${ATTEMPTS_FILE%/*}"
    local previous=0
    [[ -s $ATTEMPTS_FILE ]] && previous=$(<"$ATTEMPTS_FILE")
    [[ $previous =~ ^[0-9]+$ ]] || previous=0
    ATTEMPT=$((previous + 1))
    echo "$ATTEMPT" >"$ATTEMPTS_FILE"
    ((ATTEMPT > 1)) || return 0
    local delay=$BAKE_RETRY_BASE_SECONDS i
    for ((i = 2; i < ATTEMPT; i++)); do
        delay=$((delay * 2))
        ((delay >= BAKE_RETRY_MAX_SECONDS)) && break
    done
    ((delay > BAKE_RETRY_MAX_SECONDS)) && delay=$BAKE_RETRY_MAX_SECONDS
    log "attempt $ATTEMPT of $BAKE_RETRY_MAX_ATTEMPTS in this boot (the previous one failed): retrying in ${delay}s"
    sleep "$delay"
}

on_exit() {
    local rc=$1 status=$1
    if ((rc != 0 && ATTEMPT >= BAKE_RETRY_MAX_ATTEMPTS)); then
        rm -f "$ATTEMPTS_FILE" # a manual restart starts counting again
        log "giving up after $ATTEMPT failed attempts in this boot: fix the cause logged above, then run 'systemctl restart $UNIT' (or reboot)"
        status=$GIVE_UP_STATUS
    elif ((rc == 0)); then
        rm -f "$ATTEMPTS_FILE"
    else
        log "attempt $ATTEMPT failed (exit $rc); $UNIT runs it again"
    fi
    flush_log
    exit "$status"
}

phase_unit() { echo "bake-bootstrap-$1.service"; }

# read_phase_states: PHASE_STATE[<phase>] = its unit's ActiveState, from one systemctl call for all of
# them (every process start counts on a slow first boot). systemctl prints a block per unit.
declare -A PHASE_STATE=()
read_phase_states() {
    local -A by_unit=()
    local -a units=()
    local phase line id='' state='' shown
    for phase in "${PHASES[@]}"; do units+=("$(phase_unit "$phase")"); done
    shown=$(systemctl show --property=Id,ActiveState "${units[@]}") || return 1
    while IFS= read -r line; do
        case $line in
        Id=*) id=${line#Id=} ;;
        ActiveState=*) state=${line#ActiveState=} ;;
        *) id='' state='' ;; # the blank line between two units
        esac
        if [[ -n $id && -n $state ]]; then
            by_unit[$id]=$state
            id='' state=''
        fi
    done <<<"$shown"
    PHASE_STATE=()
    for phase in "${PHASES[@]}"; do
        PHASE_STATE[$phase]=${by_unit[$(phase_unit "$phase")]:-unknown}
    done
}

run_phases() {
    local last phase state
    last=$(phase_unit "${PHASES[-1]}")
    log "starting the phases (${PHASES[*]}) through $last"
    if ! systemctl start "$last"; then
        if read_phase_states; then
            for phase in "${PHASES[@]}"; do
                if [[ ${PHASE_STATE[$phase]} == failed ]]; then
                    log "phase $phase failed: journalctl -b -u $(phase_unit "$phase")"
                fi
            done
        fi
        return 1
    fi
    # A unit whose condition did not hold was skipped, not run: the node is not done then.
    read_phase_states || return 1
    for phase in "${PHASES[@]}"; do
        state=${PHASE_STATE[$phase]}
        if [[ $state != active ]]; then
            log "phase $phase did not run ($(phase_unit "$phase") is $state: a condition of the unit did not hold): the bootstrap is not done"
            return 2
        fi
    done
}

finish() {
    mkdir -p "${CAPI_SENTINEL%/*}"
    echo success >"$CAPI_SENTINEL"
    : >"$DONE_FILE"
    rm -f "$ATTEMPTS_FILE" "$BAKED_FILES"
    log "bootstrap of $BAKE_NODE_NAME ($BAKE_ROLE) complete"
}

bake_start bake-bootstrap
log "bootstrap of $BAKE_NODE_NAME ($BAKE_ROLE, cluster $BAKE_CLUSTER, Kubernetes $BAKE_KUBERNETES_VERSION, kubelet $BAKE_KUBELET_VERSION, $BAKE_OS/$BAKE_ARCH)"
if [[ -e $DONE_FILE ]]; then
    log "already done ($DONE_FILE exists)"
    exit 0
fi
trap 'on_exit $?' EXIT
start_attempt
rc=0
run_phases || rc=$?
case $rc in
0) finish ;;
2) exit 0 ;;
*) exit "$rc" ;;
esac

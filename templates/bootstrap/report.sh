#!/bin/bash
# bake-report STEP EVENT: tell `bake serve` (cluster.seed.reportUrl) how one step of the first boot went
# (plain shell, shipped by bake only when the profile names a report URL; the same bytes for every node).
#
# The bootstrap's units call it around their run: ExecStartPre= "started", ExecStartPost= "done" (the
# driver: "finished", reported as done once the node is), ExecStopPost= "stopped" (reported as failed,
# with the tail of the bootstrap log, unless systemd's $SERVICE_RESULT says success). Every one of those
# lines starts with '-', and this script always exits 0: a report never fails or holds a step. It waits
# at most a few seconds (curl's timeouts) and never retries; a node without the server boots the same.
#
# The body is signed with the node's own key (HMAC-SHA256 of the exact bytes), so the server knows that
# this node and no other sent it. The key never appears on a command line (/proc/PID/cmdline is
# readable by every user of the node): hmac_sha256 pads it with shell builtins and pipes it to sha256sum.
# Its sequence number only grows (the last one is kept in $SEQ_FILE; a fresh disk starts from the clock
# in milliseconds), so the server refuses a replay.
# The values come from the shell-quoted $REPORT_ENV, never from this code.
set -uo pipefail
umask 077
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

readonly REPORT_ENV=/etc/bake/report.env
readonly KEY_FILE=/etc/bake/report.key
readonly LOG_FILE=/var/log/bake/bootstrap.log
readonly DONE_FILE=/var/lib/bake/bootstrap.done
readonly SEQ_FILE=/var/lib/bake/report.seq
readonly TAIL_LINES=40
readonly TAIL_BYTES=8192
readonly CONNECT_SECONDS=2
readonly MAX_SECONDS=4

note() { printf 'bake-report: %s\n' "$*" >&2; }

# next_seq: the last sequence number + 1, or the clock in ms if that is larger (a fresh disk).
next_seq() {
    local now last=0 seq
    now=$(date +%s%3N) || return 1
    [[ $now =~ ^[0-9]+$ ]] || return 1
    install -d -m 0700 "$(dirname "$SEQ_FILE")" || return 1
    if command -v flock >/dev/null; then
        exec 9>>"$SEQ_FILE.lock" && flock -w 2 9
    fi
    if [[ -s $SEQ_FILE ]]; then last=$(<"$SEQ_FILE"); fi
    [[ $last =~ ^[0-9]+$ ]] || last=0
    seq=$((now > last ? now : last + 1))
    echo "$seq" >"$SEQ_FILE" || return 1
    echo "$seq"
}

# hmac_sha256 KEY: HMAC-SHA256 (RFC 2104) of stdin under KEY (at most 64 printable ASCII bytes, the
# hash's block size; a node's key is 64 hex digits), in hex. The padded key blocks are made by printf
# (a builtin, not an exec) and reach sha256sum through a pipe: no process gets the key in its argv.
hmac_sha256() {
    local key=$1 i n b ipad="" opad="" inner outer esc=""
    [[ $key =~ ^[[:print:]]{1,64}$ ]] || return 1
    for ((i = 0; i < 64; i++)); do
        n=0
        if ((i < ${#key})); then printf -v n '%d' "'${key:i:1}"; fi
        printf -v b '\\x%02x' $((n ^ 0x36))
        ipad+=$b
        printf -v b '\\x%02x' $((n ^ 0x5c))
        opad+=$b
    done
    # shellcheck disable=SC2059 # the formats are \xHH escapes made above, nothing else
    inner=$({ printf "$ipad" && cat; } | sha256sum) || return 1
    inner=${inner%% *}
    [[ $inner =~ ^[0-9a-f]{64}$ ]] || return 1
    for ((i = 0; i < 64; i += 2)); do esc+="\\x${inner:i:2}"; done
    # shellcheck disable=SC2059 # as above
    outer=$({ printf "$opad" && printf "$esc"; } | sha256sum) || return 1
    printf '%s\n' "${outer%% *}"
}

report() {
    local step=$1 event=$2 code="" tail="" key seq body sig
    [[ $step =~ ^[a-z]+$ ]] || return 0
    case $event in
    started | done) ;;
    finished)
        [[ -e $DONE_FILE ]] || return 0
        event="done"
        ;;
    stopped)
        [[ ${SERVICE_RESULT:-success} == success ]] && return 0
        event=failed
        code="${EXIT_CODE:-}:${EXIT_STATUS:-}"
        code=${code//[^A-Za-z0-9:_-]/}
        tail=$(tail -n "$TAIL_LINES" "$LOG_FILE" 2>/dev/null | tail -c "$TAIL_BYTES" | base64 -w0) || tail=""
        ;;
    *)
        note "unknown event $event"
        return 0
        ;;
    esac
    [[ -r $REPORT_ENV && -r $KEY_FILE ]] || return 0
    # shellcheck source=/dev/null
    . "$REPORT_ENV"
    key=$(<"$KEY_FILE")
    seq=$(next_seq) || {
        note "no sequence number: $step $event not reported"
        return 0
    }
    body=$(printf '{"v":1,"cluster":"%s","node":"%s","seq":%s,"time":%s,"step":"%s","event":"%s","exit":"%s","tail":"%s"}' \
        "$BAKE_REPORT_CLUSTER" "$BAKE_REPORT_NODE" "$seq" "$(date +%s)" "$step" "$event" "$code" "$tail")
    sig=$(printf '%s' "$body" | hmac_sha256 "$key")
    [[ $sig =~ ^[0-9a-f]{64}$ ]] || {
        note "could not sign (is $KEY_FILE a node's report key?): $step $event not reported"
        return 0
    }
    local tls=()
    if [[ -n $BAKE_REPORT_CACERT ]]; then tls=(--cacert "$BAKE_REPORT_CACERT"); fi
    if ! curl -fsS -o /dev/null --connect-timeout "$CONNECT_SECONDS" --max-time "$MAX_SECONDS" \
        --noproxy '*' --proto '=http,https' "${tls[@]}" -H 'Content-Type: application/json' \
        -H "X-Bake-Signature: sha256=$sig" --data-binary "$body" "$BAKE_REPORT_URL"; then
        note "$step $event not reported to $BAKE_REPORT_URL (the bootstrap goes on)"
    fi
    return 0
}

# sourced (the tests): the functions only
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
report "${1:-}" "${2:-}" || true
exit 0

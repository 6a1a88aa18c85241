#!/usr/bin/env bash
# bench/compare-sipp.sh: SIPp and sipnotify, one after the other, against the same
# `sipnotify phone` fleet on 127.0.0.1 (UDP, md5-qop digest challenge), and the CPU each
# agent spends per authenticated delivered target (NOTIFY, 401, NOTIFY with
# Authorization, 200).
#
# Usage:
#   bench/compare-sipp.sh [N]
#
#   N                 targets, i.e. distinct users 100000..100000+N-1 (default 20000;
#                     also from the environment as TARGETS=N)
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (the binary is ${CARGO_TARGET_DIR:-target}/release/sipnotify)
#   PORT              the phone's UDP port (default 0: a free port)
#   SIPP              the sipp binary (default sipp; Debian/Ubuntu package sip-tester)
#   SIPP_RATE         SIPp calls per second (default 10000); SIPP_LIMIT: max concurrent calls (1024)
#   SIPP_BUFF         SIPp socket buffer bytes, -buff_size (default 8388608: what sipnotify asks
#                     for its UDP socket; the kernel caps both at net.core.rmem_max)
#   CONCURRENCY       sipnotify batch --concurrency (default 1024)
#   PHONE_THREADS     sipnotify phone --threads (default 2)
#   RUN_TIMEOUT       seconds allowed to each run (default 300)
#   SKIP_BUILD=1      do not run cargo build --release
#
# The phone is restarted before each run (fresh nonces, fresh counters); its CPU is read
# from /proc/PID/stat while the run lasts. The agents' CPU (user + sys) and wall time come
# from GNU time (/usr/bin/time). Exits 1 if either run delivered less than 99% of N.
# Requires: cargo, sipp, GNU time at /usr/bin/time, Linux /proc.

set -euo pipefail

N=${1:-${TARGETS:-20000}}
case $N in '' | *[!0-9]* | 0) echo "usage: $0 [N]  (N: a positive number of targets)" >&2; exit 2 ;; esac
FIRST=100000
LAST=$((FIRST + N - 1))
PORT=${PORT:-0}
SIPP=${SIPP:-sipp}
SIPP_RATE=${SIPP_RATE:-10000}
SIPP_LIMIT=${SIPP_LIMIT:-1024}
SIPP_BUFF=${SIPP_BUFF:-8388608}
CONCURRENCY=${CONCURRENCY:-1024}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCENARIO=$ROOT/bench/sipp_uac_fleet.xml
TIME=/usr/bin/time

for tool in "$SIPP" "$TIME" timeout; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found" >&2; exit 2; }
done

if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release/sipnotify
[[ -x $BIN ]] || { echo "$0: $BIN not built" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-sipp.XXXXXX")
PHONE_PID='' AGENT_PID=''
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    if [[ -n $AGENT_PID ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        # GNU time's child is timeout(1), which passes the signal on to the agent.
        pkill -TERM -P "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    if [[ -n $PHONE_PID ]] && kill -0 "$PHONE_PID" 2>/dev/null; then
        kill -TERM "$PHONE_PID" 2>/dev/null || true
        wait "$PHONE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)

# CPU time (user + sys, all threads) of a live process, in microseconds.
cpu_us() {
    local stat rest
    local -a f
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }            # fields from 3 on: the command name may hold spaces
    read -r -a f <<<"$rest"
    echo $(((f[11] + f[12]) * 1000000 / CLK_TCK))   # utime, stime: fields 14 and 15
}

# Starts the phone fleet; sets PHONE_PID, PHONE_ADDR, PHONE_CPU0.
start_phone() {
    local log=$WORK/phone.out
    : >"$log"
    "$BIN" phone --listen "127.0.0.1:$PORT" --transport udp \
        --users "$FIRST-$LAST" --password-template 'pw-{user}' --challenge md5-qop \
        --threads "${PHONE_THREADS:-2}" >"$log" 2>"$WORK/phone.err" &
    PHONE_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if grep -q '^phone listening on' "$log"; then break; fi
        kill -0 "$PHONE_PID" 2>/dev/null || { echo "$0: the phone exited:" >&2; cat "$WORK/phone.err" >&2; exit 2; }
        sleep 0.05
    done
    PHONE_ADDR=$(sed -n 's/^phone listening on udp \([0-9.:]*\).*/\1/p' "$log")
    [[ -n $PHONE_ADDR ]] || { echo "$0: the phone did not start" >&2; exit 2; }
    PHONE_CPU0=$(cpu_us "$PHONE_PID")
}

# Stops the phone; sets PHONE_CPU (µs spent since start_phone returned) and PHONE_STATS.
stop_phone() {
    PHONE_CPU=$(($(cpu_us "$PHONE_PID") - PHONE_CPU0))
    kill -TERM "$PHONE_PID"
    wait "$PHONE_PID" || true
    PHONE_PID=
    PHONE_STATS=$(sed -n 's/^phone stopped: //p' "$WORK/phone.out")
}

# "wall user sys" from a GNU time output file -> sets WALL (s) and CPU (µs).
read_time() {
    local wall user sys
    # The last line: GNU time puts "Command exited with non-zero status N" before it.
    read -r wall user sys < <(tail -n 1 "$1")
    WALL=$wall
    CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", (u + s) * 1e6 }')
}

# Runs "$@" under GNU time and timeout(1): writes "wall user sys" to $1; sets RC.
measure() {
    local out=$1
    shift
    "$TIME" -o "$out" -f '%e %U %S' timeout -k 5 "$RUN_TIMEOUT" "$@" &
    AGENT_PID=$!
    RC=0
    wait "$AGENT_PID" || RC=$?
    AGENT_PID=
}

ROWS=()
row() { # tool delivered wall agent_cpu_us phone_cpu_us retransmissions (rates per delivered target)
    ROWS+=("$(awk -v t="$1" -v n="$N" -v d="$2" -v w="$3" -v a="$4" -v p="$5" -v r="$6" 'BEGIN {
        per = d > 0 ? d : n
        printf "%-10s %8d %9d %7.2f %10.0f %12.1f %12.1f %8d", t, n, d, w, d / w, a / per, p / per, r }')")
}

echo "compare-sipp: $N targets (users $FIRST-$LAST), sipnotify phone udp md5-qop on 127.0.0.1, $(nproc) CPUs"

# ---- SIPp --------------------------------------------------------------------------------
{
    echo SEQUENTIAL
    # field2 is the [authentication] keyword itself (see the scenario's comment).
    for ((u = FIRST; u <= LAST; u++)); do
        echo "$u;pw-$u;[authentication username=$u password=pw-$u]"
    done
} >"$WORK/users.csv"

start_phone
echo "sipp: $SIPP_RATE calls/s, at most $SIPP_LIMIT in flight, phone $PHONE_ADDR"
cd "$WORK"   # sipp writes its logs, if any, to the current directory
measure "$WORK/sipp.time" "$SIPP" "$PHONE_ADDR" -sf "$SCENARIO" -inf "$WORK/users.csv" \
    -i 127.0.0.1 -t u1 -m "$N" -r "$SIPP_RATE" -rp 1000 -l "$SIPP_LIMIT" -buff_size "$SIPP_BUFF" \
    -nostdin -default_behaviors all,-bye -timeout "${RUN_TIMEOUT}s" \
    -trace_stat -stf "$WORK/sipp-stat.csv" -fd 3600 \
    >"$WORK/sipp.out" 2>"$WORK/sipp.err"
sipp_rc=$RC
cd "$ROOT"
stop_phone
read_time "$WORK/sipp.time"
SIPP_WALL=$WALL SIPP_CPU=$CPU SIPP_PHONE_CPU=$PHONE_CPU
# The last line of the statistics file holds the cumulative counters.
stat_field() {
    awk -F';' -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
        { v = $c } END { print (c && v != "" ? v + 0 : 0) }' "$WORK/sipp-stat.csv" 2>/dev/null || echo 0
}
SIPP_OK=$(stat_field 'SuccessfulCall(C)')
SIPP_FAILED=$(stat_field 'FailedCall(C)')
SIPP_RETRANS=$(stat_field 'Retransmissions(C)')
echo "sipp: exit $sipp_rc, $SIPP_OK successful, $SIPP_FAILED failed calls; phone: $PHONE_STATS"
if [[ $sipp_rc -ne 0 && $SIPP_OK -eq 0 ]]; then
    tail -5 "$WORK/sipp.err" >&2 || true
fi
row sipp "$SIPP_OK" "$SIPP_WALL" "$SIPP_CPU" "$SIPP_PHONE_CPU" "$SIPP_RETRANS"

# ---- sipnotify ---------------------------------------------------------------------------
start_phone
echo "sipnotify batch: --concurrency $CONCURRENCY, phone $PHONE_ADDR"
{
    echo target,password
    for ((u = FIRST; u <= LAST; u++)); do echo "sip:$u@$PHONE_ADDR,pw-$u"; done
} >"$WORK/fleet.csv"
measure "$WORK/sn.time" "$BIN" batch "$WORK/fleet.csv" --output json \
    --concurrency "$CONCURRENCY" >"$WORK/out.jsonl" 2>"$WORK/sn.err"
sn_rc=$RC
stop_phone
read_time "$WORK/sn.time"
SN_WALL=$WALL SN_CPU=$CPU SN_PHONE_CPU=$PHONE_CPU
SN_OK=$(grep -c '"outcome":"delivered"' "$WORK/out.jsonl" || true)
SN_RETRANS=$(grep -o '"retransmissions":[0-9]*' "$WORK/out.jsonl" | awk -F: '{ s += $2 } END { print s + 0 }')
echo "sipnotify: exit $sn_rc, $SN_OK delivered; phone: $PHONE_STATS"
if [[ $sn_rc -ne 0 && $SN_OK -eq 0 ]]; then
    tail -5 "$WORK/sn.err" >&2 || true
fi
row sipnotify "$SN_OK" "$SN_WALL" "$SN_CPU" "$SN_PHONE_CPU" "$SN_RETRANS"

# ---- table -------------------------------------------------------------------------------
echo
printf '%-10s %8s %9s %7s %10s %12s %12s %8s\n' tool targets delivered 'wall s' targets/s \
    'agent µs/t' 'phone µs/t' retrans
printf '%s\n' "${ROWS[@]}"
awk -v a="$SIPP_CPU" -v b="$SN_CPU" -v sa="$SIPP_OK" -v sb="$SN_OK" 'BEGIN {
    if (b > 0 && sa > 0 && sb > 0)
        printf "\nagent CPU per delivered target, SIPp / sipnotify: %.1fx\n", (a / sa) / (b / sb)
    else print "\nagent CPU per delivered target, SIPp / sipnotify: n/a (nothing delivered or no CPU measured)" }'

status=0
for pair in "sipp:$SIPP_OK" "sipnotify:$SN_OK"; do
    if ((${pair#*:} * 100 < N * 99)); then
        echo "$0: ${pair%%:*} delivered ${pair#*:} of $N targets (< 99%)" >&2
        status=1
    fi
done
exit "$status"

# Helpers shared by bench/apply.sh and bench/inventory.sh; sourced, not run.
# The sourcing script sets NAME (the log prefix) and KEEP (1 keeps the scratch folder) first;
# this makes WORK, a scratch folder, and stops every process in PIDS on exit.

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK=$(mktemp -d "/tmp/odi-$NAME.XXXXXX")
PIDS=()
cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT INT TERM

free_port() {
    local p
    for _ in $(seq 1 200); do
        # Below the kernel's ephemeral range (32768 up), which the relay's many outgoing
        # connections walk through: a port taken from it can be in use by the time we bind.
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    die "no free port found"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

# median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# kib PID FIELD: a /proc/PID/status figure such as VmRSS, in KiB.
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

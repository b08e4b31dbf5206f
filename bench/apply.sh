#!/usr/bin/env bash
# A running agent applying small commits to a big network: the CPU it spends per commit.
#
#   bench/apply.sh [--artifacts=N] [--relays=N] [--keep]     (defaults 1,000,000 and 1,000)
#
# Generates the scale network (crates/odi-network/examples/scale.rs) with five follow-up
# commits that each add one release file of 1,000 artifacts, rewinds the branch to the first
# commit and starts a real relay agent (`odi agent`, mode relay, relay-0007) on it. When it
# has applied that commit and gone quiet, the branch moves one commit at a time; after each,
# SIGHUP makes the agent pull, and the script waits until its status shows the new commit and
# its CPU time stops moving. Prints, per commit, wall seconds from SIGHUP to the new commit in
# the status (polled every 0.1 s, so to that resolution) and the agent's CPU time (user + system, from /proc, 10 ms ticks) over the whole
# step: pull, read, verify, load, assign, persist, reconcile. Then the median of the five.
# Target (issue 13): under 100 ms of CPU per commit at 1,000,000 artifacts.
#
# The generated origins do not resolve, so the relay's downloads fail at once and wait for
# `retry_after` (set to 1 h): the figure is the apply, not downloading. Listens on 127.0.0.1
# only; the agent is stopped on exit and the scratch folder removed unless --keep.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=apply
ARTIFACTS=1000000
RELAYS=1000
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --artifacts=*) ARTIFACTS=${arg#--artifacts=} ;;
        --relays=*) RELAYS=${arg#--relays=} ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (use --artifacts=N, --relays=N, --keep)" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# CPU ticks (user + system) of a process so far; fields after the parenthesised name.
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
TICK_MS=$((1000 / $(getconf CLK_TCK)))
# Waits until the agent's CPU time has not moved for a second (at most 120 s); prints ticks.
quiet() {
    local a b deadline=$(( $(date +%s) + 120 ))
    a=$(ticks "$AGENT")
    while :; do
        sleep 1
        b=$(ticks "$AGENT")
        [ "$a" = "$b" ] && { echo "$b"; return 0; }
        [ "$(date +%s)" -lt "$deadline" ] || die "the agent did not go quiet (log: $WORK/agent.log)"
        a=$b
    done
}

log "building odi and the scale example (release)"
(cd "$ROOT" && cargo build --release -q -p odi --bin odi -p odi-network --example scale)
ODI="$ROOT/target/release/odi"
SCALE="$ROOT/target/release/examples/scale"

log "generating $ARTIFACTS artifacts and $RELAYS relays with five follow-up commits"
"$SCALE" "$WORK/net" "$ARTIFACTS" "$RELAYS" incremental > "$WORK/scale.out"
KEYS=$(sed -n 's/^root keys: //p' "$WORK/scale.out")
[ -n "$KEYS" ] || die "no root keys in the scale output"
mapfile -t COMMITS < <(git -C "$WORK/net" rev-list --reverse --max-count=6 main)
[ "${#COMMITS[@]}" = 6 ] || die "expected six commits, found ${#COMMITS[@]}"
git -C "$WORK/net" update-ref refs/heads/main "${COMMITS[0]}"

PORT=$(free_port)
KEYLIST=$(printf '"%s", ' $KEYS)
cat > "$WORK/relay.toml" <<EOF
mode = "relay"
name = "relay-0007"
data_dir = "$WORK/data"
listen = ["127.0.0.1:$PORT"]

[repository]
url = "$WORK/net"
branch = "main"
root_keys = [${KEYLIST%, }]
interval = "1h"

[reconcile]
scrub_interval = "0s"
retry_after = "1h"
EOF

STATUS="http://127.0.0.1:$PORT/.odi/v1/status"
commit_is() { curl -sf "$STATUS" | grep -q "\"commit\":\"$1\""; }
log "starting the relay agent on the first commit"
ODI_LOG=warn "$ODI" agent --config "$WORK/relay.toml" > "$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=("$AGENT")
deadline=$(( $(date +%s) + 300 ))
until commit_is "${COMMITS[0]}"; do
    kill -0 "$AGENT" 2>/dev/null || die "the agent exited (log: $WORK/agent.log)"
    [ "$(date +%s)" -lt "$deadline" ] || die "the first commit was not applied in 300 s"
    sleep 0.5
done
quiet > /dev/null
log "applied the first commit; RSS $(kib "$AGENT" VmRSS) KiB"

CPUS=()
for i in 1 2 3 4 5; do
    before=$(quiet)
    git -C "$WORK/net" update-ref refs/heads/main "${COMMITS[$i]}"
    t0=$(date +%s.%N)
    kill -HUP "$AGENT"
    until commit_is "${COMMITS[$i]}"; do
        kill -0 "$AGENT" 2>/dev/null || die "the agent exited (log: $WORK/agent.log)"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    after=$(quiet)
    ms=$(( (after - before) * TICK_MS ))
    CPUS+=("$ms")
    printf 'commit %d: in the status %.1f s after SIGHUP; agent CPU %d ms\n' "$i" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$ms"
done
printf 'median agent CPU per commit: %s ms (runs %s; target under 100 ms)\n' \
    "$(printf '%s\n' "${CPUS[@]}" | median)" "${CPUS[*]}"
printf 'RSS after: %s KiB\n' "$(kib "$AGENT" VmRSS)"

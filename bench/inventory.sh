#!/usr/bin/env bash
# A relay holding many artifacts and the directory probing it: probe bytes per round when
# nothing changes, and the memory of both.
#
#   bench/inventory.sh [--files=N] [--rounds=N] [--keep]     (defaults 100,000 and 5)
#
# Writes N small distinct files into an origin folder, makes the bench network of them
# (agent/examples/bench_network.rs: one catalog with a file:// origin, one relay, one
# directory probing every 5 s) and starts real agents: the relay first, until it reports
# Ready (it has copied and verified every file), then the directory, until its table routes
# all N. Then it lets the directory probe for --rounds more rounds with nothing changing and
# prints the bytes the directory received per probe (status lines, headers and bodies,
# counted by the directory itself: odi_probe_received_bytes_total over odi_probes_total),
# against the target of issue 13: under 10 KB per round at 100,000 artifacts. Also prints
# both agents' RSS now and at their peak (VmHWM): targets 100 MB for the relay, and for a
# directory a peak under 2x its steady RSS. Last, the relay is restarted with its store full:
# seconds until it reports Ready again (polled every 0.5 s), and its RSS then.
# Listens on 127.0.0.1 only; the agents are stopped on exit and the scratch folder removed
# unless --keep.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=inventory
FILES=100000
ROUNDS=5
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --files=*) FILES=${arg#--files=} ;;
        --rounds=*) ROUNDS=${arg#--rounds=} ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (use --files=N, --rounds=N, --keep)" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# alive PID NAME: dies when the agent has exited, rather than wait for it until the timeout.
alive() { kill -0 "$1" 2>/dev/null || die "the $2 exited: $(tail -n 3 "$WORK/$2.log")"; }
# metric URL NAME: the sum of a counter or gauge over its labels.
metric() {
    curl -sf "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f\n", s}'
}

log "building odi and bench_network (release)"
(cd "$ROOT" && cargo build --release -q -p odi --bin odi --example bench_network)
ODI="$ROOT/target/release/odi"
EX="$ROOT/target/release/examples"

log "writing $FILES files into the origin"
mkdir -p "$WORK/origin"
python3 - "$WORK/origin" "$FILES" > "$WORK/files.list" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"s{i % 256:02x}"
    os.makedirs(os.path.join(root, d), exist_ok=True)
    name = f"{d}/f{i:07d}.bin"
    with open(os.path.join(root, name), "w") as f:
        f.write(f"small artifact {i}\n")
    print(name)
EOF
RELAY_PORT=$(free_port)
DIR_PORT=$(free_port)
"$EX/bench_network" "$WORK/net" "$WORK/origin" "$RELAY_PORT" "$DIR_PORT" "@$WORK/files.list" > /dev/null
# More parallel copies than the default 4 (both hold the files): they are small and local.
for f in relay directory; do
    sed -i 's/^scrub_interval = "0s"$/scrub_interval = "0s"\nconcurrency = 32/' "$WORK/net/$f.toml"
done

RELAY="http://127.0.0.1:$RELAY_PORT"
DIR="http://127.0.0.1:$DIR_PORT"
log "starting the relay; waiting until it holds all $FILES"
ODI_LOG=warn "$ODI" agent --config "$WORK/net/relay.toml" > "$WORK/relay.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
relay_ready() { alive "$RPID" relay && curl -sf "$RELAY/.odi/v1/status" | grep -q '"type":"Ready","status":true'; }
wait_for 3600 "the relay to report Ready (log: $WORK/relay.log)" relay_ready
log "relay Ready"

log "starting the directory; waiting until it routes all $FILES"
ODI_LOG=warn "$ODI" agent --config "$WORK/net/directory.toml" > "$WORK/directory.log" 2>&1 &
DPID=$!
PIDS+=("$DPID")
routes_all() { alive "$DPID" directory && [ "$(metric "$DIR" odi_routable_artifacts)" = "$FILES" ]; }
wait_for 1800 "the directory to route every artifact (log: $WORK/directory.log)" routes_all
log "directory routes all $FILES"

# One more round so the first, full inventory is behind us; then the rounds measured.
probes() { metric "$DIR" odi_probes_total; }
# at_least N: the directory has made N probes.
at_least() { [ "$(probes)" -ge "$1" ]; }
wait_for 60 "a probe round" at_least $(( $(probes) + 1 ))
b0=$(metric "$DIR" odi_probe_received_bytes_total)
p0=$(probes)
wait_for $((ROUNDS * 10 + 30)) "$ROUNDS probe rounds" at_least $((p0 + ROUNDS))
b1=$(metric "$DIR" odi_probe_received_bytes_total)
p1=$(probes)
printf 'probe bytes received per round, nothing changed: %s B (%s B over %s probes; target under 10,000 B at 100,000 artifacts)\n' \
    "$(( (b1 - b0) / (p1 - p0) ))" "$((b1 - b0))" "$((p1 - p0))"
printf 'relay holding %s: RSS %s KiB, peak %s KiB (target under 100 MB)\n' \
    "$FILES" "$(kib "$RPID" VmRSS)" "$(kib "$RPID" VmHWM)"
printf 'directory routing %s: RSS %s KiB, peak %s KiB (target: peak under 2x steady)\n' \
    "$FILES" "$(kib "$DPID" VmRSS)" "$(kib "$DPID" VmHWM)"

# A restart with the store full: how soon the relay serves again, and its memory then.
kill -TERM "$RPID"
wait "$RPID" 2>/dev/null || true
t0=$(date +%s.%N)
ODI_LOG=warn "$ODI" agent --config "$WORK/net/relay.toml" >> "$WORK/relay.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
relay_ready_again() { alive "$RPID" relay && curl -sf "$RELAY/.odi/v1/status" | grep -q '"type":"Ready","status":true'; }
wait_for 600 "the restarted relay to report Ready (log: $WORK/relay.log)" relay_ready_again
printf 'relay restarted with %s objects: Ready after %.1f s, RSS %s KiB, peak %s KiB\n' \
    "$FILES" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')" \
    "$(kib "$RPID" VmRSS)" "$(kib "$RPID" VmHWM)"

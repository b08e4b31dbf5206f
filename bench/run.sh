#!/usr/bin/env bash
# ODI performance figures, side by side with the reference tools on this machine.
#
#   bench/run.sh [--quick] [--keep] [--only=FIGURES]   (e.g. --only=23 runs figures 2 and 3)
#
# Prints, and writes to bench/results.txt, four figures, each the median of N runs
# (N = 5, or 3 with --quick) with both absolute values and their ratio:
#   1. relay bytes/s serving a 1 GiB artifact vs nginx static (sendfile), wrk -t2 -c4;
#      plus memory of both under 64 concurrent downloads (wrk -c64);
#   2. directory redirects/s and p99 vs nginx `return 302`, wrk -t2 -c64 --latency;
#   3. sha256 of a 1 GiB file (page cache) the way the agent hashes vs `openssl dgst -sha256`,
#      one core and all cores;
#   4. `odi validate` and `odi plan` on a network of 100,000 artifacts and 1,000 relays (with a
#      snapshot role);
#   5. HTTPS (TLS 1.3, the same P-256 certificate on both sides): relay bytes/s vs nginx ssl,
#      directory redirects/s with keep-alive and with one request per connection (a handshake
#      each) vs nginx `return 302`, HTTP/2 redirects with h2load vs nginx `http2`; and the
#      server CPU per GB of plain-HTTP relay bytes from figure 1 against its target.
#
# Everything listens on 127.0.0.1 only, every wait is bounded, every process started here is
# stopped on exit (also on Ctrl-C), and the scratch folder (/tmp/odi-bench.*) is removed
# unless --keep is given. Missing tools are installed with apt-get (Debian).
# Runs are interleaved (odi, reference, reference, odi, ...) so drift in the machine's load
# hits both sides alike; the servers are measured one at a time.
#
# ODI_BEFORE=/path/to/an/older/odi adds that binary as a third side of figures 1 and 2 (its
# own relay and directory, with copies of the same data), interleaved in the same runs, and
# reports after/before ratios: how a change moved the figures, measured side by side.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results.txt"
RUNS=5
DUR=10
KEEP=0
ONLY=12345
for arg in "$@"; do
    case "$arg" in
        --quick) RUNS=3; DUR=5 ;;
        --keep) KEEP=1 ;;
        --only=*) ONLY=${arg#--only=} ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (use --quick, --keep, --only=FIGURES like --only=23)" >&2; exit 2 ;;
    esac
done

want() { case "$ONLY" in *"$1"*) return 0 ;; *) return 1 ;; esac; }
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
WORK=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process started here and waits (bounded) for it to go.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- tools
need_apt=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v git >/dev/null || need_apt+=(git)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    log "installing ${need_apt[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"

log "building (cargo build --release)"
(cd "$ROOT" && cargo build --release -q -p odi --bin odi --example bench_network --example hash_bench >&2)
(cd "$ROOT" && cargo build --release -q -p odi-network --example scale >&2)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ODI="$TARGET/release/odi"
EX="$TARGET/release/examples"
for f in "$ODI" "$EX/bench_network" "$EX/hash_bench" "$EX/scale"; do [ -x "$f" ] || die "$f was not built"; done

# ---------------------------------------------------------------- helpers
CORES=$(nproc)
WORK=$(mktemp -d /tmp/odi-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user and must read the origin

now_ns() { date +%s%N; }

# A free loopback port (nothing answers on it now).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    die "no free port found"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

# median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# calc EXPR: floating point arithmetic.
calc() { awk "BEGIN {printf \"%.6g\", $1}"; }
fmt() { awk -v x="$1" -v d="${2:-2}" 'BEGIN {printf "%.*f", d, x}'; }
verdict() { awk -v r="$1" -v t="$2" -v dir="${3:-ge}" 'BEGIN { ok = (dir == "ge") ? (r >= t) : (r < t); print ok ? "meets target" : "BELOW TARGET" }'; }

# wrk_run ARGS...: runs wrk with the raw-number reporter; sets WRK to
# "bytes duration_us requests errors p50_us p99_us".
WRK=""
wrk_run() {
    timeout $((DUR + 60)) wrk -s "$BENCH/wrk-report.lua" "$@" > "$WORK/wrk.out" 2>&1 || die "wrk $* failed: $(cat "$WORK/wrk.out")"
    WRK=$(sed -n 's/^ODI_WRK bytes=\([0-9]*\) duration_us=\([0-9]*\) requests=\([0-9]*\) errors=\([0-9]*\) p50_us=\([0-9]*\) p99_us=\([0-9]*\)$/\1 \2 \3 \4 \5 \6/p' "$WORK/wrk.out")
    [ -n "$WRK" ] || die "no figures from wrk $*: $(cat "$WORK/wrk.out")"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# RSS of a process and its children (nginx: master + workers).
tree_rss_kb() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do total=$((total + $(rss_kb "$p"))); done
    echo "$total"
}
# CPU time (user + system, clock ticks) of a process and its children so far.
cpu_ticks() {
    local total=0 p t
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
TICK=$(getconf CLK_TCK)
reset_hwm() { for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }

# mem_under_load PID URL: sets MEM to "before_kb peak_kb after_kb hwm_kb bytes duration_us" for PID
# (and its children) while wrk -c64 downloads URL for DUR seconds, sampling every 0.1 s.
mem_under_load() {
    local pid=$1 url=$2 before peak after r wpid hwm=0 p h
    reset_hwm "$pid"
    sleep 0.5
    before=$(tree_rss_kb "$pid"); peak=$before
    timeout $((DUR + 60)) wrk -s "$BENCH/wrk-report.lua" -t2 -c64 -d"${DUR}s" --timeout 120s "$url" > "$WORK/wrk64.out" 2>&1 &
    wpid=$!
    while kill -0 "$wpid" 2>/dev/null; do
        r=$(tree_rss_kb "$pid"); [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.1
    done
    wait "$wpid" || die "wrk -c64 failed: $(cat "$WORK/wrk64.out")"
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do h=$(hwm_kb "$p"); hwm=$((hwm + h)); done
    sleep 2
    after=$(tree_rss_kb "$pid")
    local raw
    raw=$(sed -n 's/^ODI_WRK bytes=\([0-9]*\) duration_us=\([0-9]*\) .*/\1 \2/p' "$WORK/wrk64.out")
    [ -n "$raw" ] || die "no figures from wrk -c64: $(cat "$WORK/wrk64.out")"
    MEM="$before $peak $after $hwm $raw"
}

# order I SIDES...: the sides in turn, rotated by run number so none is always first.
order_of() {
    local i=$1; shift
    local sides=("$@") n=$# k out=()
    for k in $(seq 0 $((n - 1))); do out+=("${sides[$(( (k + i) % n ))]}"); done
    echo "${out[*]}"
}
BEFORE=${ODI_BEFORE:-}
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || die "ODI_BEFORE=$BEFORE is not an executable"

SUMMARY=()
DETAILS=()
add() { SUMMARY+=("$*"); }
detail() { DETAILS+=("$*"); }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------- the network and servers
log "scratch folder $WORK"
mkdir -p "$WORK/origin" "$WORK/nginx"
chmod 755 "$WORK/origin"
log "writing a 1 GiB artifact"
head -c 1073741824 /dev/urandom > "$WORK/origin/big.bin"
head -c 1048576 /dev/urandom > "$WORK/origin/small.bin"
chmod 644 "$WORK/origin/"*.bin

RELAY_PORT=$(free_port)
DIR_PORT=$(free_port)
NGINX_PORT=$(free_port)
TLS_RELAY_PORT=$(free_port)
TLS_DIR_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
[ "$RELAY_PORT" != "$DIR_PORT" ] && [ "$DIR_PORT" != "$NGINX_PORT" ] && [ "$RELAY_PORT" != "$NGINX_PORT" ] || die "port clash, run again"

log "generating the benchmark network"
"$EX/bench_network" "$WORK/net" "$WORK/origin" "$RELAY_PORT" "$DIR_PORT" big.bin small.bin >/dev/null
# The HTTPS twin (figure 5): its own keys, nodes and data; its certificate is nginx's too.
"$EX/bench_network" --tls "$WORK/tlsnet" "$WORK/origin" "$TLS_RELAY_PORT" "$TLS_DIR_PORT" big.bin small.bin >/dev/null
chmod 755 "$WORK/tlsnet" "$WORK/tlsnet/tls"; chmod 644 "$WORK/tlsnet/tls/"*.pem

RELAY_URL="http://127.0.0.1:$RELAY_PORT"
DIR_URL="http://127.0.0.1:$DIR_PORT"
NGINX_URL="http://127.0.0.1:$NGINX_PORT"

TLS_RELAY_URL="https://127.0.0.1:$TLS_RELAY_PORT"
TLS_DIR_URL="https://127.0.0.1:$TLS_DIR_PORT"
NGINX_TLS_URL="https://127.0.0.1:$NGINX_TLS_PORT"
CA="$WORK/tlsnet/tls/cert.pem"
sed -e "s#@PREFIX@#$WORK/nginx#g" -e "s#@PORT@#$NGINX_PORT#g" -e "s#@ROOT@#$WORK/origin#g" \
    -e "s#@REDIRECT@#$RELAY_URL/r/bench/small.bin#g" -e "s#@TLSPORT@#$NGINX_TLS_PORT#g" \
    -e "s#@CERT@#$CA#g" -e "s#@KEY@#$WORK/tlsnet/tls/key.pem#g" \
    -e "s#@TLSREDIRECT@#$TLS_RELAY_URL/r/bench/small.bin#g" "$BENCH/nginx.conf" > "$WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" > "$WORK/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_for 20 "nginx on port $NGINX_PORT" curl -sf -o /dev/null "$NGINX_URL/r/small.bin"

log "starting the relay agent and waiting until it is Ready (it copies and verifies 1 GiB)"
ODI_LOG=warn "$ODI" agent --config "$WORK/net/relay.toml" > "$WORK/relay.log" 2>&1 &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
relay_ready() { curl -sf "$RELAY_URL/.odi/v1/status" | grep -q '"type":"Ready","status":true'; }
wait_for 600 "the relay to report Ready (log: $WORK/relay.log)" relay_ready
cmp -s <(curl -sf "$RELAY_URL/r/bench/small.bin") "$WORK/origin/small.bin" || die "the relay serves wrong bytes"
curl -sf -o /dev/null -r 0-0 "$NGINX_URL/r/big.bin" || die "nginx does not serve the artifact"

if [ -n "$BEFORE" ]; then
    log "starting the ODI_BEFORE relay on a copy of the relay's data"
    BRELAY_PORT=$(free_port)
    cp -a "$WORK/net/bench-relay-data" "$WORK/net/before-relay-data"
    sed -e "s#127.0.0.1:$RELAY_PORT#127.0.0.1:$BRELAY_PORT#" -e "s#bench-relay-data#before-relay-data#" \
        "$WORK/net/relay.toml" > "$WORK/net/before-relay.toml"
    ODI_LOG=warn "$BEFORE" agent --config "$WORK/net/before-relay.toml" > "$WORK/before-relay.log" 2>&1 &
    BRELAY_PID=$!
    PIDS+=("$BRELAY_PID")
    BRELAY_URL="http://127.0.0.1:$BRELAY_PORT"
    brelay_ready() { curl -sf "$BRELAY_URL/.odi/v1/status" | grep -q '"type":"Ready","status":true'; }
    wait_for 600 "the ODI_BEFORE relay to report Ready (log: $WORK/before-relay.log)" brelay_ready
    find "$WORK/net/before-relay-data" -type f -size +1000M -exec cat {} + > /dev/null
fi

# Both copies of the 1 GiB file in the page cache before measuring.
cat "$WORK/origin/big.bin" > /dev/null
find "$WORK/net/bench-relay-data" -type f -size +1000M -exec cat {} + > /dev/null

# ---------------------------------------------------------------- 1. relay bytes/s
if want 1; then
log "1. relay vs nginx static: $RUNS x ${DUR}s each, wrk -t2 -c4"
odi_bps=(); ngx_bps=(); odi_cpg=(); ngx_cpg=(); bef_bps=(); bef_cpg=()
sides=(odi nginx); [ -n "$BEFORE" ] && sides+=(before)
for i in $(seq 1 "$RUNS"); do
    for who in $(order_of "$i" "${sides[@]}"); do
        case "$who" in
            odi) url="$RELAY_URL/r/bench/big.bin"; pid=$RELAY_PID ;;
            before) url="$BRELAY_URL/r/bench/big.bin"; pid=$BRELAY_PID ;;
            *) url="$NGINX_URL/r/big.bin"; pid=$NGINX_PID ;;
        esac
        c0=$(cpu_ticks "$pid")
        wrk_run -t2 -c4 -d"${DUR}s" --timeout 120s "$url"
        c1=$(cpu_ticks "$pid")
        read -r bytes dur _ errs _ _ <<<"$WRK"
        bps=$(calc "$bytes / ($dur / 1e6)")
        cpg=$(calc "(($c1 - $c0) / $TICK) / ($bytes / 1e9)") # server CPU seconds per GB sent
        case "$who" in
            odi) odi_bps+=("$bps"); odi_cpg+=("$cpg") ;;
            before) bef_bps+=("$bps"); bef_cpg+=("$cpg") ;;
            *) ngx_bps+=("$bps"); ngx_cpg+=("$cpg") ;;
        esac
        detail "1 run $i $who $(fmt "$(calc "$bps / 1e9")" 3) GB/s, server CPU $(fmt "$cpg" 3) s/GB, errors=$errs"
    done
done
O=$(printf '%s\n' "${odi_bps[@]}" | median); N=$(printf '%s\n' "${ngx_bps[@]}" | median); R=$(calc "$O / $N")
OC=$(printf '%s\n' "${odi_cpg[@]}" | median); NC=$(printf '%s\n' "${ngx_cpg[@]}" | median)
OC1=$OC; NC1=$NC
add "$(printf '1. Relay bytes/s, 1 GiB artifact (wrk -t2 -c4, %ss x %s)\n   odi relay %s GB/s   nginx sendfile %s GB/s   ratio %sx  (target >= 0.90x: %s)\n   server CPU per GB sent: odi %s s, nginx %s s' \
    "$DUR" "$RUNS" "$(fmt "$(calc "$O/1e9")")" "$(fmt "$(calc "$N/1e9")")" "$(fmt "$R" 3)" "$(verdict "$R" 0.9)" "$(fmt "$OC" 3)" "$(fmt "$NC" 3)")"
if [ -n "$BEFORE" ]; then
    B=$(printf '%s\n' "${bef_bps[@]}" | median); BC=$(printf '%s\n' "${bef_cpg[@]}" | median)
    add "$(printf '   ODI_BEFORE relay %s GB/s, server CPU %s s/GB   after/before ratio %sx' \
        "$(fmt "$(calc "$B/1e9")")" "$(fmt "$BC" 3)" "$(fmt "$(calc "$O / $B")" 3)")"
fi

log "1b. memory under 64 concurrent downloads (${DUR}s each)"
mem_under_load "$RELAY_PID" "$RELAY_URL/r/bench/big.bin"
read -r ob op oa oh obytes odur <<<"$MEM"
mem_under_load "$NGINX_PID" "$NGINX_URL/r/big.bin"
read -r nb np na nh nbytes ndur <<<"$MEM"
mb() { fmt "$(calc "$1 / 1024")" 1; }
add "$(printf '   Memory under 64 concurrent downloads (wrk -t2 -c64, %ss), RSS before / peak / after:\n   odi relay %s / %s / %s MiB (VmHWM %s MiB)   nginx master+2 workers %s / %s / %s MiB (VmHWM sum %s MiB)\n   throughput at 64 connections: odi %s GB/s, nginx %s GB/s (ratio %sx)' \
    "$DUR" "$(mb "$ob")" "$(mb "$op")" "$(mb "$oa")" "$(mb "$oh")" "$(mb "$nb")" "$(mb "$np")" "$(mb "$na")" "$(mb "$nh")" \
    "$(fmt "$(calc "$obytes / ($odur / 1e6) / 1e9")")" "$(fmt "$(calc "$nbytes / ($ndur / 1e6) / 1e9")")" \
    "$(fmt "$(calc "($obytes / $odur) / ($nbytes / $ndur)")")")"

fi

# ---------------------------------------------------------------- 2. redirects/s
if want 2; then
log "starting the directory agent and waiting until it redirects to the relay"
ODI_LOG=warn "$ODI" agent --config "$WORK/net/directory.toml" > "$WORK/directory.log" 2>&1 &
DIR_PID=$!
PIDS+=("$DIR_PID")
routed() { [ "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$DIR_URL/r/bench/small.bin")" = "302 $RELAY_URL/r/bench/small.bin" ]; }
wait_for 600 "the directory to redirect to the relay (log: $WORK/directory.log)" routed
[ "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$NGINX_URL/redirect/bench/small.bin")" = "302 $RELAY_URL/r/bench/small.bin" ] \
    || die "nginx does not redirect"
if [ -n "$BEFORE" ]; then
    log "starting the ODI_BEFORE directory on a copy of the directory's data"
    BDIR_PORT=$(free_port)
    cp -a "$WORK/net/bench-dir-data" "$WORK/net/before-dir-data"
    rm -f "$WORK/net/before-dir-data/stats.redb"
    sed -e "s#127.0.0.1:$DIR_PORT#127.0.0.1:$BDIR_PORT#" -e "s#bench-dir-data#before-dir-data#" \
        "$WORK/net/directory.toml" > "$WORK/net/before-directory.toml"
    ODI_LOG=warn "$BEFORE" agent --config "$WORK/net/before-directory.toml" > "$WORK/before-directory.log" 2>&1 &
    BDIR_PID=$!
    PIDS+=("$BDIR_PID")
    BDIR_URL="http://127.0.0.1:$BDIR_PORT"
    brouted() { [ "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$BDIR_URL/r/bench/small.bin")" = "302 $RELAY_URL/r/bench/small.bin" ]; }
    wait_for 600 "the ODI_BEFORE directory to redirect (log: $WORK/before-directory.log)" brouted
fi
sleep 2

log "2. directory vs nginx return 302: $RUNS x ${DUR}s each, wrk -t2 -c64 --latency"
odi_rps=(); ngx_rps=(); odi_p99=(); ngx_p99=(); odi_cpr=(); ngx_cpr=(); bef_rps=(); bef_cpr=()
sides=(odi nginx); [ -n "$BEFORE" ] && sides+=(before)
for i in $(seq 1 "$RUNS"); do
    for who in $(order_of "$i" "${sides[@]}"); do
        case "$who" in
            odi) url="$DIR_URL/r/bench/small.bin"; pid=$DIR_PID ;;
            before) url="$BDIR_URL/r/bench/small.bin"; pid=$BDIR_PID ;;
            *) url="$NGINX_URL/redirect/bench/small.bin"; pid=$NGINX_PID ;;
        esac
        c0=$(cpu_ticks "$pid")
        wrk_run -t2 -c64 -d"${DUR}s" --timeout 10s --latency "$url"
        c1=$(cpu_ticks "$pid")
        read -r _ dur reqs errs _ p99 <<<"$WRK"
        rps=$(calc "$reqs / ($dur / 1e6)")
        cpr=$(calc "(($c1 - $c0) / $TICK) * 1e6 / $reqs") # server CPU microseconds per redirect
        case "$who" in
            odi) odi_rps+=("$rps"); odi_p99+=("$p99"); odi_cpr+=("$cpr") ;;
            before) bef_rps+=("$rps"); bef_cpr+=("$cpr") ;;
            *) ngx_rps+=("$rps"); ngx_p99+=("$p99"); ngx_cpr+=("$cpr") ;;
        esac
        detail "2 run $i $who $(fmt "$rps" 0) req/s, p99 $(fmt "$(calc "$p99/1000")" 2) ms, server CPU $(fmt "$cpr" 1) us/redirect, errors=$errs"
    done
done
OC=$(printf '%s\n' "${odi_cpr[@]}" | median); NC=$(printf '%s\n' "${ngx_cpr[@]}" | median)
O=$(printf '%s\n' "${odi_rps[@]}" | median); N=$(printf '%s\n' "${ngx_rps[@]}" | median); R=$(calc "$O / $N")
OP=$(printf '%s\n' "${odi_p99[@]}" | median); NP=$(printf '%s\n' "${ngx_p99[@]}" | median)
add "$(printf '2. Directory redirects/s (wrk -t2 -c64 --latency, %ss x %s)\n   odi directory %s req/s, p99 %s ms   nginx return 302 %s req/s, p99 %s ms   ratio %sx  (target >= 1.00x: %s)\n   server CPU per redirect: odi %s us, nginx %s us (ratio of CPU efficiency %sx)' \
    "$DUR" "$RUNS" "$(fmt "$O" 0)" "$(fmt "$(calc "$OP/1000")")" "$(fmt "$N" 0)" "$(fmt "$(calc "$NP/1000")")" "$(fmt "$R" 3)" "$(verdict "$R" 1.0)" \
    "$(fmt "$OC" 1)" "$(fmt "$NC" 1)" "$(fmt "$(calc "$NC / $OC")")")"

if [ -n "$BEFORE" ]; then
    B=$(printf '%s\n' "${bef_rps[@]}" | median); BC=$(printf '%s\n' "${bef_cpr[@]}" | median)
    add "$(printf '   ODI_BEFORE directory %s req/s, server CPU %s us/redirect   after/before ratio %sx' \
        "$(fmt "$B" 0)" "$(fmt "$BC" 1)" "$(fmt "$(calc "$O / $B")" 3)")"
fi

stop "$DIR_PID"
[ -z "$BEFORE" ] || { stop "$BDIR_PID"; stop "$BRELAY_PID"; }

fi

# ---------------------------------------------------------------- 5. HTTPS
if want 5; then
stop "$RELAY_PID" # its CPU is not measured here; the TLS twin serves the same bytes
log "starting the HTTPS relay and directory (figure 5)"
ODI_LOG=warn "$ODI" agent --config "$WORK/tlsnet/relay.toml" > "$WORK/tls-relay.log" 2>&1 &
TRELAY_PID=$!
PIDS+=("$TRELAY_PID")
trelay_ready() { curl -sf --cacert "$CA" "$TLS_RELAY_URL/.odi/v1/status" | grep -q '"type":"Ready","status":true'; }
wait_for 600 "the HTTPS relay to report Ready (log: $WORK/tls-relay.log)" trelay_ready
ODI_LOG=warn "$ODI" agent --config "$WORK/tlsnet/directory.toml" > "$WORK/tls-directory.log" 2>&1 &
TDIR_PID=$!
PIDS+=("$TDIR_PID")
trouted() { [ "$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code} %{redirect_url}' "$TLS_DIR_URL/r/bench/small.bin")" = "302 $TLS_RELAY_URL/r/bench/small.bin" ]; }
wait_for 600 "the HTTPS directory to redirect to the HTTPS relay (log: $WORK/tls-directory.log)" trouted
[ "$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code} %{redirect_url}' "$NGINX_TLS_URL/redirect/bench/small.bin")" = "302 $TLS_RELAY_URL/r/bench/small.bin" ] \
    || die "nginx does not redirect over TLS"
cmp -s <(curl -sf --cacert "$CA" "$TLS_RELAY_URL/r/bench/small.bin") "$WORK/origin/small.bin" || die "the HTTPS relay serves wrong bytes"
find "$WORK/tlsnet/bench-relay-data" -type f -size +1000M -exec cat {} + > /dev/null
sleep 2

# h2load_run ARGS...: sets H2 to "requests_per_second succeeded failed".
H2=""
h2load_run() {
    timeout $((DUR + 60)) h2load "$@" > "$WORK/h2load.out" 2>&1 || die "h2load $* failed: $(tail -5 "$WORK/h2load.out")"
    local rps ok failed
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$WORK/h2load.out")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1/p' "$WORK/h2load.out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\2/p' "$WORK/h2load.out")
    grep -q '^Application protocol: h2' "$WORK/h2load.out" || die "h2load did not speak h2: $(cat "$WORK/h2load.out")"
    [ -n "$rps" ] && [ -n "$ok" ] || die "no figures from h2load: $(cat "$WORK/h2load.out")"
    H2="$rps $ok $failed"
}

log "5. HTTPS vs nginx ssl: $RUNS x ${DUR}s each for bytes, keep-alive, one request per connection, h2"
declare -A acc
sides=(odi nginx)
for i in $(seq 1 "$RUNS"); do
    for who in $(order_of "$i" "${sides[@]}"); do
        if [ "$who" = odi ]; then
            big="$TLS_RELAY_URL/r/bench/big.bin"; redir="$TLS_DIR_URL/r/bench/small.bin"; bpid=$TRELAY_PID; rpid=$TDIR_PID
        else
            big="$NGINX_TLS_URL/r/big.bin"; redir="$NGINX_TLS_URL/redirect/bench/small.bin"; bpid=$NGINX_PID; rpid=$NGINX_PID
        fi
        c0=$(cpu_ticks "$bpid")
        wrk_run -t2 -c4 -d"${DUR}s" --timeout 120s "$big"
        c1=$(cpu_ticks "$bpid")
        read -r bytes dur _ errs _ _ <<<"$WRK"
        bps=$(calc "$bytes / ($dur / 1e6)"); cpg=$(calc "(($c1 - $c0) / $TICK) / ($bytes / 1e9)")
        acc[$who.bps]+="$bps "; acc[$who.cpg]+="$cpg "
        detail "5 run $i $who TLS bytes $(fmt "$(calc "$bps / 1e9")" 3) GB/s, server CPU $(fmt "$cpg" 3) s/GB, errors=$errs"
        wrk_run -t2 -c64 -d"${DUR}s" --timeout 10s "$redir"
        read -r _ dur reqs errs _ _ <<<"$WRK"
        rps=$(calc "$reqs / ($dur / 1e6)"); acc[$who.ka]+="$rps "
        detail "5 run $i $who TLS redirects keep-alive $(fmt "$rps" 0) req/s, errors=$errs"
        wrk_run -t2 -c64 -d"${DUR}s" --timeout 10s -H "Connection: close" "$redir"
        read -r _ dur reqs errs _ _ <<<"$WRK"
        rps=$(calc "$reqs / ($dur / 1e6)"); acc[$who.close]+="$rps "
        detail "5 run $i $who TLS redirects one per connection $(fmt "$rps" 0) req/s, errors=$errs"
        h2load_run -D "$DUR" -c 64 -m 10 -t 2 "$redir"
        read -r rps ok failed <<<"$H2"
        acc[$who.h2]+="$rps "
        detail "5 run $i $who h2 redirects $(fmt "$rps" 0) req/s, succeeded=$ok failed=$failed"
    done
done
med() { printf '%s\n' ${acc[$1]} | median; }
OB=$(med odi.bps); NB=$(med nginx.bps); OK=$(med odi.ka); NK=$(med nginx.ka)
OX=$(med odi.close); NX=$(med nginx.close); OH=$(med odi.h2); NH=$(med nginx.h2)
OG=$(med odi.cpg); NG=$(med nginx.cpg)
RB=$(calc "$OB / $NB"); RK=$(calc "$OK / $NK"); RX=$(calc "$OX / $NX"); RH=$(calc "$OH / $NH")
add "$(printf '5. HTTPS, TLS 1.3, one P-256 certificate (%ss x %s)\n   relay bytes (wrk -t2 -c4): odi %s GB/s, server CPU %s s/GB   nginx ssl %s GB/s, %s s/GB   ratio %sx  (target >= 1.00x: %s)\n   redirects, keep-alive (wrk -t2 -c64): odi %s req/s   nginx %s req/s   ratio %sx  (target >= 1.00x: %s)\n   redirects, one request per connection (wrk -c64, Connection: close): odi %s req/s   nginx %s req/s   ratio %sx  (target >= 1.00x: %s)\n   HTTP/2 redirects (h2load -c64 -m10): odi %s req/s   nginx http2 %s req/s   ratio %sx' \
    "$DUR" "$RUNS" "$(fmt "$(calc "$OB/1e9")")" "$(fmt "$OG" 3)" "$(fmt "$(calc "$NB/1e9")")" "$(fmt "$NG" 3)" "$(fmt "$RB" 3)" "$(verdict "$RB" 1.0)" \
    "$(fmt "$OK" 0)" "$(fmt "$NK" 0)" "$(fmt "$RK" 3)" "$(verdict "$RK" 1.0)" \
    "$(fmt "$OX" 0)" "$(fmt "$NX" 0)" "$(fmt "$RX" 3)" "$(verdict "$RX" 1.0)" \
    "$(fmt "$OH" 0)" "$(fmt "$NH" 0)" "$(fmt "$RH" 3)")"
if want 1; then
    RC=$(calc "$OC1 / $NC1")
    add "$(printf '   plain-HTTP relay bytes, server CPU per GB (figure 1): odi %s s, nginx sendfile %s s   ratio %sx  (target <= 1.50x: %s)' \
        "$(fmt "$OC1" 3)" "$(fmt "$NC1" 3)" "$(fmt "$RC" 2)" "$(verdict "$RC" 1.5001 lt)")"
fi
stop "$TDIR_PID"; stop "$TRELAY_PID"
fi

# The servers are not needed any more: stop them so the CPU figures below run alone.
stop "${RELAY_PID:-}"; stop "$NGINX_PID"

# ---------------------------------------------------------------- 3. sha256
if want 3; then
# Each side is one process (or CORES processes) timed by the shell: wall clock and CPU time
# (user + system, children included). "Per core" is bytes per CPU-second, which other load on
# the machine barely moves; wall-clock figures are shown beside it.
log "3. sha256: odi (sha2, the store's hash_file) vs openssl dgst, $RUNS runs, $CORES cores"
F="$WORK/origin/big.bin"
cat "$F" > /dev/null
SIZE=$(stat -c %s "$F")
# cpu_time COMMAND...: runs it; sets REAL and CPU (user + sys) in seconds.
cpu_time() {
    local TIMEFORMAT='%R %U %S' t u s
    t=$( { time timeout 600 "$@" > /dev/null 2>&1 ; } 2>&1 ) || die "$* failed"
    read -r REAL u s <<<"$t"
    CPU=$(calc "$u + $s")
}
SHA_NI=$("$EX/hash_bench" memory "$F" | awk '/^cpu sha_ni/ {print $3}')
mem=(); st_w=(); st_c=(); sy_c=(); os_w=(); os_c=(); par_w=(); par_n=(); opar_w=(); opar_n=()
for i in $(seq 1 "$RUNS"); do
    mem+=("$("$EX/hash_bench" memory "$F" | awk '/^memory/ {print $2 / $3}')")
    cpu_time "$EX/hash_bench" store "$F"; st_w+=("$(calc "$SIZE / $REAL")"); st_c+=("$(calc "$SIZE / $CPU")")
    cpu_time openssl dgst -sha256 "$F"; os_w+=("$(calc "$SIZE / $REAL")"); os_c+=("$(calc "$SIZE / $CPU")")
    cpu_time "$EX/hash_bench" sync "$F"; sy_c+=("$(calc "$SIZE / $CPU")")
    cpu_time "$EX/hash_bench" parallel "$F" "$CORES"; par_w+=("$(calc "$SIZE * $CORES / $REAL")"); par_n+=("$(calc "$CPU / $REAL")")
    cpu_time bash -c 'for _ in $(seq 1 "$1"); do openssl dgst -sha256 "$2" > /dev/null & done; wait' - "$CORES" "$F"
    opar_w+=("$(calc "$SIZE * $CORES / $REAL")"); opar_n+=("$(calc "$CPU / $REAL")")
    detail "3 run $i GB/s per CPU-second: odi hash_file $(fmt "$(calc "${st_c[-1]}/1e9")"), openssl $(fmt "$(calc "${os_c[-1]}/1e9")"), odi sync $(fmt "$(calc "${sy_c[-1]}/1e9")"); wall GB/s: odi $(fmt "$(calc "${st_w[-1]}/1e9")"), openssl $(fmt "$(calc "${os_w[-1]}/1e9")"), odi x$CORES $(fmt "$(calc "${par_w[-1]}/1e9")") on $(fmt "${par_n[-1]}" 1) cores, openssl x$CORES $(fmt "$(calc "${opar_w[-1]}/1e9")") on $(fmt "${opar_n[-1]}" 1) cores; sha2 in memory $(fmt "$(calc "${mem[-1]}/1e9")")"
done
m() { printf '%s\n' "$@" | median; }
g() { fmt "$(calc "$1 / 1e9")"; }
SC=$(m "${st_c[@]}"); OC=$(m "${os_c[@]}"); YC=$(m "${sy_c[@]}"); SW=$(m "${st_w[@]}"); OW=$(m "${os_w[@]}"); M=$(m "${mem[@]}")
PW=$(m "${par_w[@]}"); PN=$(m "${par_n[@]}"); QW=$(m "${opar_w[@]}"); QN=$(m "${opar_n[@]}")
R1=$(calc "$SC / $OC"); RW=$(calc "$SW / $OW"); RP=$(calc "$PW / $QW")
add "$(printf '3. sha256 of a 1 GiB file in page cache (sha2 crate, SHA-NI detected: %s)\n   per core (bytes per CPU-second): odi store::hash_file %s GB/s   openssl dgst -sha256 %s GB/s   ratio %sx  (target >= 0.90x: %s)\n      wall clock, one process: odi %s GB/s, openssl %s GB/s (ratio %sx); std::fs reads + sha2 %s GB/s per CPU-s; sha2 alone in memory %s GB/s\n   all %s cores (wall clock): odi %s hash_file tasks in one process %s GB/s on %s cores   %s openssl processes %s GB/s on %s cores   ratio %sx  (target >= 0.90x: %s)' \
    "$SHA_NI" "$(g "$SC")" "$(g "$OC")" "$(fmt "$R1" 3)" "$(verdict "$R1" 0.9)" "$(g "$SW")" "$(g "$OW")" "$(fmt "$RW" 3)" "$(g "$YC")" "$(g "$M")" \
    "$CORES" "$CORES" "$(g "$PW")" "$(fmt "$PN" 1)" "$CORES" "$(g "$QW")" "$(fmt "$QN" 1)" "$(fmt "$RP" 3)" "$(verdict "$RP" 0.9)")"

fi

# ---------------------------------------------------------------- 4. validate + plan
if want 4; then
log "4. validate + plan at 100,000 artifacts / 1,000 relays"
timeout 600 "$EX/scale" "$WORK/scale" 100000 1000 snapshot > "$WORK/scale.log" 2>&1 || die "scale example failed: $(tail -5 "$WORK/scale.log")"
"$ODI" validate "$WORK/scale" > /dev/null 2>&1 || die "the generated network does not validate"
if [ -n "$BEFORE" ]; then
    # The same network without a snapshot role, which an older build can read.
    timeout 600 "$EX/scale" "$WORK/scale-plain" 100000 1000 > "$WORK/scale-plain.log" 2>&1 || die "scale example failed"
fi
val=(); valc=(); plan=(); bplan=()
# timed COMMAND...: sets T to its wall-clock seconds.
timed() { local t0 t1; t0=$(now_ns); timeout 120 "$@" > /dev/null 2>&1 || die "$* failed"; t1=$(now_ns); T=$(calc "($t1 - $t0) / 1e9"); }
for i in $(seq 1 "$RUNS"); do
    timed "$ODI" validate "$WORK/scale"; val+=("$T")
    timed "$ODI" validate --commit HEAD "$WORK/scale"; valc+=("$T")
    timed "$ODI" plan --node relay-0007 "$WORK/scale"; plan+=("$T")
    detail "4 run $i validate=${val[-1]}s validate-commit=${valc[-1]}s plan=${plan[-1]}s"
    if [ -n "$BEFORE" ]; then
        timed "$BEFORE" plan --node relay-0007 "$WORK/scale-plain"; bplan+=("$T")
        detail "4 run $i ODI_BEFORE plan (no snapshot role)=${bplan[-1]}s"
    fi
done
V=$(printf '%s\n' "${val[@]}" | median); VC=$(printf '%s\n' "${valc[@]}" | median); PL=$(printf '%s\n' "${plan[@]}" | median)
add "$(printf '4. Network of 100,000 artifacts and 1,000 relays (wall clock of the odi binary, median of %s)\n   odi plan --node relay-0007 (verifies + loads + assigns + plans) %s s   vs target 2 s: %sx of budget  (target < 2 s: %s)\n   odi validate (work tree) %s s, odi validate --commit HEAD (git objects) %s s' \
    "$RUNS" "$(fmt "$PL")" "$(fmt "$(calc "$PL / 2")")" "$(verdict "$PL" 2 lt)" "$(fmt "$V")" "$(fmt "$VC")")"
if [ -n "$BEFORE" ]; then
    BP=$(printf '%s\n' "${bplan[@]}" | median)
    add "$(printf '   ODI_BEFORE plan of the same network without a snapshot role %s s   after (with snapshot) / before ratio %sx' "$(fmt "$BP")" "$(fmt "$(calc "$PL / $BP")" 3)")"
fi

fi

# ---------------------------------------------------------------- summary
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "ODI benchmarks, $STARTED, median of $RUNS runs$([ "$RUNS" = 3 ] && echo ' (--quick)')"
    echo "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; load average at start $LOAD_START, at end $LOAD_END"
    echo "tools: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(openssl version | awk '{print $1, $2}'), odi $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+changes')"
    echo
    for s in "${SUMMARY[@]}"; do echo "$s"; echo; done
    echo "runs:"
    for d in "${DETAILS[@]}"; do echo "  $d"; done
} > "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"

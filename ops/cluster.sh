#!/usr/bin/env bash
# ops/cluster.sh — a local waggle fleet on loopback: redis-server (AOF on), one
# waggle-broker and N waggle-workers, each with a log and a pid file under one
# directory. For trying the distributed mode on one machine, for demos and for
# the end-to-end test (tests/integration/test_ops_cluster.c).
#
#   ops/cluster.sh start [--workers N] [--model NAME=PATH]... [--base-port P]
#                        [--dir D] [--threads T] [--max-seqs S]
#   ops/cluster.sh status [--dir D]
#   ops/cluster.sh stop   [--dir D] [--timeout S]
#
# Design: everything the later `status`/`stop` need (endpoints, pids) is
# written to D (default ./.cluster): D/cluster.env and D/pids/*.pid. Ports are
# P, P+1, ... when --base-port is given, otherwise a free range is picked.
# `stop` sends SIGTERM to the workers first (they drain), then the broker,
# then Redis, waits, and only then SIGKILLs what is left. A pid is signalled
# only while /proc/PID/cmdline still names the binary we started, so a reused
# pid is never hit. Binaries come from $WAGGLE_BIN (a build directory, or a
# directory holding the three binaries), default <repo>/build.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=./.cluster
WORKERS=2
BASE_PORT=
THREADS=1
MAX_SEQS=16
STOP_TIMEOUT=40
MODELS=()

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
    cat <<'EOF'
usage: ops/cluster.sh start [options] | status [--dir D] | stop [--dir D] [--timeout S]
  --workers N        workers to start (default 2)
  --model NAME=PATH  model every worker serves (repeatable; default: demo=the demo model in
                     examples/models: waggle-kjv-*.gguf, else stories260K.gguf, under the
                     name "demo" that examples/jobs.jsonl uses)
  --base-port P      redis P, broker frontend P+1, backend P+2, metrics P+3, worker i stream
                     P+10+i (default: a free range)
  --dir D            logs, pid files, Redis data (default ./.cluster)
  --threads T        forward-pass threads per worker (default 1)
  --max-seqs S       sequence slots (credits) per worker (default 16)
  --timeout S        stop: seconds to wait after SIGTERM before SIGKILL (default 40)
Binaries: $WAGGLE_BIN (build dir or flat dir), default <repo>/build.
EOF
}

# Locate a binary in $WAGGLE_BIN: flat layout or a CMake build tree.
find_bin() { # name subdir
    local base=${WAGGLE_BIN:-$ROOT/build}
    if [ -x "$base/$1" ]; then echo "$base/$1"
    elif [ -x "$base/$2/$1" ]; then echo "$base/$2/$1"
    elif command -v "$1" >/dev/null 2>&1 && [ -z "${WAGGLE_BIN:-}" ]; then command -v "$1"
    else die "no $1 in $base (build first, or set WAGGLE_BIN)"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pick a range of $1 consecutive ports with nothing listening on any of them, below the
# kernel's ephemeral range (so an outgoing connection cannot grab one before we bind it).
free_base() {
    local n=$1 tries=0 b i ok lo=32768 span
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    span=$((lo - n - 10000))
    [ $span -gt 100 ] || span=20000
    while [ $tries -lt 50 ]; do
        b=$((10000 + (RANDOM * 32768 + RANDOM) % span))
        ok=1
        for ((i = 0; i < n; i++)); do
            if port_busy $((b + i)); then ok=0; break; fi
        done
        [ $ok = 1 ] && { echo "$b"; return 0; }
        tries=$((tries + 1))
    done
    die "no free port range of $n found"
}

# GET /metrics from HOST PORT with bash's /dev/tcp (no curl needed).
metrics() {
    local fd
    exec {fd}<>"/dev/tcp/$1/$2" || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$1" "$2" >&$fd
    timeout 3 cat <&$fd
    exec {fd}>&-
}

# Is pid file $1 alive and still our process (its cmdline names $2)?
pid_ours() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    # a zombie is not alive
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# Start "$@" in the background with its own session, log to $LOG, pid to $PIDF.
spawn() {
    setsid "$@" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDF"
}

default_model() {
    local m
    for m in "$ROOT"/examples/models/waggle-kjv-*.gguf; do
        [ -f "$m" ] && { echo "demo=$m"; return; }
    done
    [ -f "$ROOT/examples/models/stories260K.gguf" ] && { echo "demo=$ROOT/examples/models/stories260K.gguf"; return; }
    die "no demo model in examples/models; pass --model NAME=PATH"
}

cmd_start() {
    while [ $# -gt 0 ]; do
        case $1 in
        --workers) WORKERS=$2; shift 2 ;;
        --model) MODELS+=("$2"); shift 2 ;;
        --base-port) BASE_PORT=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --max-seqs) MAX_SEQS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
    if ! [[ $WORKERS =~ ^[0-9]+$ ]] || [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt 64 ]; then
        die "--workers must be 1..64, got '$WORKERS'"
    fi
    if [ ${#MODELS[@]} -eq 0 ]; then
        local dm
        dm=$(default_model) || exit 1
        MODELS=("$dm")
    fi
    local m
    for m in "${MODELS[@]}"; do
        [[ $m == ?*=?* ]] || die "--model needs NAME=PATH, got '$m'"
        [ -e "${m#*=}" ] || die "model file ${m#*=} not found"
    done
    local broker worker waggle
    broker=$(find_bin waggle-broker broker) || exit 1
    worker=$(find_bin waggle-worker worker) || exit 1
    waggle=$(find_bin waggle tools) || exit 1
    command -v redis-server >/dev/null || die "redis-server not installed"

    mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/redis" || die "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    for f in "$DIR"/pids/*.pid; do
        [ -e "$f" ] || continue
        local kind
        kind=$(basename "$f" .pid)
        pid_ours "$f" "${kind%%-*}" && die "a cluster already runs in $DIR (ops/cluster.sh stop --dir $DIR)"
        rm -f "$f"
    done

    local need=$((10 + WORKERS)) b
    if [ -n "$BASE_PORT" ]; then
        b=$BASE_PORT
        for ((i = 0; i < 4; i++)); do port_busy $((b + i)) && die "port $((b + i)) is in use"; done
        for ((i = 0; i < WORKERS; i++)); do port_busy $((b + 10 + i)) && die "port $((b + 10 + i)) is in use"; done
    else
        b=$(free_base "$need") || exit 1
    fi
    local redis_port=$b fe="tcp://127.0.0.1:$((b + 1))" be="tcp://127.0.0.1:$((b + 2))"
    local mh="127.0.0.1:$((b + 3))" redis_url="redis://127.0.0.1:$b"

    # Redis: own port, loopback only, AOF on (the durability the broker relies on).
    LOG=$DIR/logs/redis.log PIDF=$DIR/pids/redis.pid \
        spawn redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$DIR/redis" \
        --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction \
        --daemonize no --logfile ""
    local t
    for ((t = 0; t < 100; t++)); do
        redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    [ $t -lt 100 ] || { cmd_stop_dir; die "redis did not start (see $DIR/logs/redis.log)"; }

    LOG=$DIR/logs/broker.log PIDF=$DIR/pids/broker.pid \
        spawn "$broker" --frontend "$fe" --backend "$be" --redis "$redis_url" --metrics-http "$mh"
    for ((t = 0; t < 50; t++)); do
        "$waggle" status --broker "$fe" >/dev/null 2>&1 && break
        pid_ours "$DIR/pids/broker.pid" waggle-broker || t=50
    done
    [ $t -lt 50 ] || { cmd_stop_dir; die "broker did not answer (see $DIR/logs/broker.log)"; }

    local margs=() i
    for m in "${MODELS[@]}"; do margs+=(--model "$m"); done
    for ((i = 0; i < WORKERS; i++)); do
        LOG=$DIR/logs/worker-$i.log PIDF=$DIR/pids/worker-$i.pid \
            spawn "$worker" --broker "$be" --stream "tcp://127.0.0.1:$((b + 10 + i))" --redis "$redis_url" \
            --id "worker-$i" --threads "$THREADS" --max-seqs "$MAX_SEQS" "${margs[@]}"
    done

    cat >"$DIR/cluster.env" <<EOF
# written by ops/cluster.sh start; read by status/stop
WAGGLE_FRONTEND=$fe
WAGGLE_BACKEND=$be
WAGGLE_METRICS=$mh
WAGGLE_REDIS=$redis_url
WAGGLE_WORKERS=$WORKERS
WAGGLE_MODEL=${MODELS[0]%%=*}
WAGGLE_CLI=$waggle
EOF

    # Ready when the broker's /metrics counts every worker (each sends READY after loading).
    local seen=0
    for ((t = 0; t < 600; t++)); do
        seen=$(metrics 127.0.0.1 $((b + 3)) 2>/dev/null | awk '$1 == "waggle_broker_workers" {print $2}')
        [ "${seen:-0}" -ge "$WORKERS" ] 2>/dev/null && break
        for ((i = 0; i < WORKERS; i++)); do
            pid_ours "$DIR/pids/worker-$i.pid" waggle-worker ||
                { cmd_stop_dir; die "worker-$i exited (see $DIR/logs/worker-$i.log)"; }
        done
        sleep 0.1
    done
    [ "${seen:-0}" -ge "$WORKERS" ] 2>/dev/null ||
        { cmd_stop_dir; die "only ${seen:-0}/$WORKERS workers registered after 60 s (logs in $DIR/logs)"; }

    # examples/jobs.jsonl names the model "demo" (the default NAME here); for another
    # model write a small batch of our own.
    local jobs=$ROOT/examples/jobs.jsonl model=${MODELS[0]%%=*}
    if [ "$model" != demo ] || [ ! -f "$jobs" ]; then
        jobs=$DIR/jobs.jsonl
        for i in 1 2 3 4 5; do
            printf '{"custom_id":"demo-%d","method":"POST","url":"/v1/completions","body":{"model":"%s","prompt":"Once upon a time %d","max_tokens":32}}\n' \
                "$i" "$model" "$i"
        done >"$jobs"
    fi
    cat <<EOF
waggle cluster up in $DIR ($WORKERS worker(s), model ${MODELS[*]})
  redis            $redis_url   (AOF in $DIR/redis)
  broker frontend  $fe
  broker backend   $be
  metrics          http://$mh/metrics
  worker streams   tcp://127.0.0.1:$((b + 10)) .. tcp://127.0.0.1:$((b + 9 + WORKERS))
  logs             $DIR/logs/

try:
  $waggle submit --broker $fe --input $jobs --output out.jsonl --stream
  $waggle tail --broker $fe --all --redis $redis_url
  $waggle top --broker $fe --metrics-http $mh
  $waggle status --broker $fe --metrics-http $mh --redis $redis_url
  $0 stop --dir $DIR
EOF
}

# Terminate one pid file's process: SIGTERM, wait up to $2 s, then SIGKILL.
term_one() { # pidfile timeout-s
    local f=$1 kind pid
    kind=$(basename "$f" .pid)
    kind=${kind%%-*}
    case $kind in redis) kind=redis-server ;; *) kind=waggle-$kind ;; esac
    pid=$(cat "$f" 2>/dev/null)
    if pid_ours "$f" "$kind"; then kill -TERM "$pid" 2>/dev/null; fi
}

wait_gone() { # timeout-s pidfiles...
    local limit=$(($1 * 10)) t f kind left
    shift
    for ((t = 0; t < limit; t++)); do
        left=0
        for f in "$@"; do
            [ -e "$f" ] || continue
            kind=$(basename "$f" .pid); kind=${kind%%-*}
            case $kind in redis) kind=redis-server ;; *) kind=waggle-$kind ;; esac
            pid_ours "$f" "$kind" && left=1
        done
        [ $left = 0 ] && return 0
        sleep 0.1
    done
    for f in "$@"; do
        [ -e "$f" ] || continue
        kind=$(basename "$f" .pid); kind=${kind%%-*}
        case $kind in redis) kind=redis-server ;; *) kind=waggle-$kind ;; esac
        if pid_ours "$f" "$kind"; then
            echo "cluster.sh: $(basename "$f" .pid) still up after SIGTERM; SIGKILL" >&2
            kill -KILL "$(cat "$f")" 2>/dev/null
        fi
    done
    sleep 0.2
}

# Stop order: workers (drain), broker, redis. Removes the pid files.
cmd_stop_dir() {
    local ws=() f
    for f in "$DIR"/pids/worker-*.pid; do [ -e "$f" ] && ws+=("$f"); done
    if [ ${#ws[@]} -gt 0 ]; then
        for f in "${ws[@]}"; do term_one "$f"; done
        wait_gone "$STOP_TIMEOUT" "${ws[@]}"
    fi
    for f in broker redis; do
        [ -e "$DIR/pids/$f.pid" ] || continue
        term_one "$DIR/pids/$f.pid"
        wait_gone 10 "$DIR/pids/$f.pid"
    done
    rm -f "$DIR"/pids/*.pid
}

cmd_stop() {
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) DIR=$2; shift 2 ;;
        --timeout) STOP_TIMEOUT=$2; shift 2 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
    [ -d "$DIR/pids" ] || { echo "no cluster in $DIR"; return 0; }
    cmd_stop_dir
    echo "cluster in $DIR stopped"
}

cmd_status() {
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) DIR=$2; shift 2 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
    [ -f "$DIR/cluster.env" ] || die "no cluster in $DIR"
    # shellcheck disable=SC1091
    . "$DIR/cluster.env"
    local f kind rc=0 n=0
    for f in "$DIR"/pids/*.pid; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        kind=$(basename "$f" .pid); kind=${kind%%-*}
        case $kind in redis) kind=redis-server ;; *) kind=waggle-$kind ;; esac
        if pid_ours "$f" "$kind"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"
        else echo "$(basename "$f" .pid): NOT running"; rc=1
        fi
    done
    [ $n -gt 0 ] || { echo "no processes (stopped)"; return 1; }
    "$WAGGLE_CLI" status --broker "$WAGGLE_FRONTEND" --metrics-http "$WAGGLE_METRICS" --redis "$WAGGLE_REDIS" || rc=1
    return $rc
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac

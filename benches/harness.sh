# Sourced by the bench scripts (load.sh, proxy_tls.sh, instructions.sh): messages under the
# script's name, a work directory, the processes started (append their pids to `pids`), all
# ended and removed at exit; and `apt_install` for a missing tool. A script that defines
# `before_cleanup` has it run after its processes end and before the work directory goes.

script="$(basename "$0" .sh)"
log() { echo "$script.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

work="$(mktemp -d "/tmp/tower-bearer-$script.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done 2>/dev/null
    if declare -F before_cleanup >/dev/null; then before_cleanup || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() { # PACKAGE
    log "installing $1"
    apt-get install -y "$1" >&2 || { apt-get update >&2 && apt-get install -y "$1" >&2; }
}

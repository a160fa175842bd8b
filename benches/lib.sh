# benches/lib.sh: shared pieces of the benchmark scripts (sourced, not run).

# start_registry DIR LOGLEVEL: a docker-registry on a free 127.0.0.1 port with its data and
# log (every response's size at level info) in DIR; sets REG (host:port) and REG_PID.
start_registry() {
    local dir=$1 level=${2:-error} port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    REG=127.0.0.1:$port
    cat >"$dir/registry.yml" <<YML
version: 0.1
log: {level: $level}
storage:
  filesystem: {rootdirectory: $dir/registry}
http: {addr: $REG}
YML
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do curl -s "http://$REG/v2/" >/dev/null && return 0; sleep 0.1; done
    echo "docker-registry did not start on $REG: $(tail -3 "$dir/registry.log")" >&2
    return 1
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

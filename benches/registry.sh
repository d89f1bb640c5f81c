# Sourced by the bench scripts that need a registry: Debian's `docker-registry` on a free loopback port.
# Needs: docker-registry, python3; the caller keeps a PIDS array of what to stop at exit.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve_registry DIR → a registry with its config, data and log in DIR; sets REG_PORT once it answers.
serve_registry() {
    local dir=$1
    mkdir -p "$dir/data"
    REG_PORT=$(free_port)
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
  secret: bench
CONFIG
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$REG_PORT/v2/')" 2>/dev/null && break
        sleep 0.1
    done
}

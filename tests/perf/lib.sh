# Shell helpers shared by the benchmark scripts of tests/perf (sourced).

# A free TCP port on loopback, picked by the kernel.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 10 s until something listens on loopback port $1.
wait_for_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null &&
      return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

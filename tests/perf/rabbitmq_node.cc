// rabbitmq_node: a private RabbitMQ node for bench_rabbitmq.sh, started by the
// test harness (tests/testing/rabbitmq_server.h: loopback, ports picked at
// run time, everything in a temporary directory of its own). Prints the
// node's AMQP port on stdout once it accepts a login, then keeps it until
// stdin reaches its end (the script holds the writing end, so the node goes
// when the script does, however it ends) or SIGTERM, SIGINT or SIGHUP arrive,
// and kills it (RabbitMqServer's destructor: every process of the node, and
// its directory).
//
//   rabbitmq_node <FIFO >PORT_FILE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "tests/testing/rabbitmq_server.h"

namespace {

int stop_pipe[2] = {-1, -1};

void OnSignal(int) {
  const char byte = 0;
  [[maybe_unused]] ssize_t written = write(stop_pipe[1], &byte, 1);
}

}  // namespace

int main() {
  if (pipe(stop_pipe) != 0) return 1;
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) sigaction(signal_number, &action, nullptr);

  absl::StatusOr<std::unique_ptr<switchboard::testing::RabbitMqServer>> server =
      switchboard::testing::RabbitMqServer::Start();
  if (!server.ok()) {
    std::cerr << "rabbitmq_node: " << server.status() << std::endl;
    return 1;
  }
  std::cout << (*server)->port() << std::endl;

  pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    if (fds[0].revents != 0) {
      char buffer[256];
      const ssize_t read_bytes = read(STDIN_FILENO, buffer, sizeof(buffer));
      if (read_bytes <= 0) break;  // The end of stdin, or an error.
    }
  }
  server->reset();
  return 0;
}

#include "tests/testing/in_process_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/config/config.h"
#include "tests/testing/poll.h"

namespace switchboard::testing {

absl::StatusOr<InProcessServer> StartInProcessServer(absl::string_view yaml) {
  absl::StatusOr<config::Config> config =
      config::ParseConfig(yaml, [](const std::string&) { return std::nullopt; });
  if (!config.ok()) return config.status();
  config->mutable_server()->set_listen("127.0.0.1:0");
  config->mutable_server()->set_metrics_listen("127.0.0.1:0");
  config->mutable_server()->set_drain_timeout_ms(5000);
  absl::StatusOr<std::unique_ptr<app::Server>> server = app::Server::Start(*config);
  if (!server.ok()) return server.status();
  InProcessServer result;
  result.target = absl::StrCat("127.0.0.1:", (*server)->grpc_port());
  result.metrics_port = (*server)->metrics_port();
  result.server = *std::move(server);
  return result;
}

int ConnectToLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

absl::StatusOr<std::string> HttpGet(int port, absl::string_view path) {
  const int fd = ConnectToLoopback(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to port ", port));
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("short write");
  }
  std::string response;
  char buffer[16384];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0)
    response.append(buffer, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::DataLossError("no HTTP body");
  return response.substr(body + 4);
}

absl::StatusOr<double> ScrapeMetric(int port, absl::string_view series) {
  absl::StatusOr<std::string> page = HttpGet(port, "/metrics");
  if (!page.ok()) return page.status();
  for (absl::string_view line : absl::StrSplit(*page, '\n')) {
    double value = 0;
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ") &&
        absl::SimpleAtod(line, &value)) {
      return value;
    }
  }
  return absl::NotFoundError(absl::StrCat("no series ", series, " on the metrics page"));
}

absl::StatusOr<double> PollMetric(int port, absl::string_view series, double value,
                                  absl::Duration timeout) {
  return Poll<double>([&] { return ScrapeMetric(port, series); },
                      [value](const double& seen) { return seen == value; }, timeout);
}

}  // namespace switchboard::testing

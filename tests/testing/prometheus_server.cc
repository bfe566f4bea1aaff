#include "tests/testing/prometheus_server.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/in_process_server.h"

namespace switchboard::testing {
namespace {

constexpr char kPrometheusBinary[] = "/usr/bin/prometheus";
constexpr absl::Duration kStartTimeout = absl::Seconds(30);

// Percent-encodes `text` for a URL's query string.
std::string UrlEncode(absl::string_view text) {
  std::string encoded;
  for (const char c : text) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') {
      encoded.push_back(c);
    } else {
      absl::StrAppendFormat(&encoded, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return encoded;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrometheusServer>> PrometheusServer::Start(absl::string_view job,
                                                                          int target_port) {
  std::unique_ptr<PrometheusServer> server;
  const absl::Status started = StartOnPickedPorts("Prometheus", [&]() -> absl::Status {
    std::string dir = (std::filesystem::temp_directory_path() / "switchboard-prometheus-XXXXXX");
    if (mkdtemp(dir.data()) == nullptr) {
      return absl::InternalError("cannot create a directory for Prometheus");
    }
    // Replacing a failed attempt's server removes its directory.
    server.reset(new PrometheusServer(dir, PickUnusedPort()));
    return server->Launch(job, target_port);
  });
  if (!started.ok()) return started;
  return server;
}

absl::Status PrometheusServer::Launch(absl::string_view job, int target_port) {
  const std::string config_path = absl::StrCat(dir_, "/prometheus.yml");
  std::ofstream(config_path) << absl::StrFormat(R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: ["127.0.0.1:%d"]
)",
                                                job, target_port);
  absl::StatusOr<Subprocess> process =
      Subprocess::Start({kPrometheusBinary, absl::StrCat("--config.file=", config_path),
                         absl::StrCat("--storage.tsdb.path=", dir_, "/data"),
                         absl::StrCat("--web.listen-address=127.0.0.1:", port_)});
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  // Another server on the port (picked by both) would answer too, while
  // ours exits with "address already in use": the answer must come from a
  // Prometheus with our data directory.
  const std::string our_storage_flag = absl::StrCat(R"("storage.tsdb.path":")", dir_, "/data\"");
  const auto answers_as_ours = [&] {
    absl::StatusOr<std::string> flags = HttpGet(port_, "/api/v1/status/flags");
    return flags.ok() && absl::StrContains(*flags, our_storage_flag);
  };
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!HttpGet(port_, "/-/ready").ok() || !answers_as_ours() || !Query("vector(1)").ok()) {
    if (process_->Wait(absl::Milliseconds(100)).has_value()) {
      // "listen tcp 127.0.0.1:<port>: bind: address already in use" when
      // its port was taken.
      return ExitedAtStartError("Prometheus", process_->stderr_text());
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("Prometheus did not become ready within ",
                                                      absl::FormatDuration(kStartTimeout), ":\n",
                                                      LogTail(process_->stderr_text())));
    }
  }
  return absl::OkStatus();
}

PrometheusServer::~PrometheusServer() {
  process_.reset();  // Kills and reaps it.
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::StatusOr<double> PrometheusServer::Query(absl::string_view expr) const {
  absl::StatusOr<std::string> body =
      HttpGet(port_, absl::StrCat("/api/v1/query?query=", UrlEncode(expr)));
  if (!body.ok()) return body.status();
  // {"status":"success","data":{"resultType":"vector","result":[{"metric":
  // {...},"value":[<time>,"<value>"]}, ...]}}: the first "value" pair.
  if (body->find(R"("status":"success")") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("query ", expr, " failed: ", *body));
  }
  const size_t value = body->find(R"("value":[)");
  if (value == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("query ", expr, " has no result"));
  }
  const size_t open = body->find(",\"", value);
  const size_t close = open == std::string::npos ? open : body->find('"', open + 2);
  double number = 0;
  if (close == std::string::npos ||
      !absl::SimpleAtod(absl::string_view(*body).substr(open + 2, close - open - 2), &number)) {
    return absl::DataLossError(absl::StrCat("unreadable answer to ", expr, ": ", *body));
  }
  return number;
}

}  // namespace switchboard::testing

#include "tests/testing/nginx_server.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"

namespace switchboard::testing {
namespace {

// Where Debian's nginx-light (scripts/setup.sh) installs nginx.
constexpr char kNginxBinary[] = "/usr/sbin/nginx";
constexpr char kOpensslBinary[] = "/usr/bin/openssl";
constexpr absl::Duration kStartTimeout = absl::Seconds(10);

// Text that goes into the configuration inside `quote`s, where nginx would
// also read `$` as a variable and `\` as an escape.
absl::Status CheckQuotable(absl::string_view what, absl::string_view text, char quote) {
  const std::string forbidden = {quote, '\\', '$'};
  if (text.find_first_of(forbidden) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must not contain any of ", forbidden, ": ", text));
  }
  return absl::OkStatus();
}

std::optional<AccessLogEntry> ParseAccessLogLine(absl::string_view line) {
  // log_format switchboard: $msec $status $connection $request_time
  // $server_protocol $request_uri
  std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
  AccessLogEntry entry;
  double msec = 0;
  double request_seconds = 0;
  if (fields.size() != 6 || !absl::SimpleAtod(fields[0], &msec) ||
      !absl::SimpleAtoi(fields[1], &entry.status) ||
      !absl::SimpleAtoi(fields[2], &entry.connection) ||
      !absl::SimpleAtod(fields[3], &request_seconds)) {
    return std::nullopt;
  }
  entry.time = absl::UnixEpoch() + absl::Milliseconds(static_cast<int64_t>(msec * 1000 + 0.5));
  entry.request_time = absl::Milliseconds(static_cast<int64_t>(request_seconds * 1000 + 0.5));
  entry.protocol = std::string(fields[4]);
  entry.uri = std::string(fields[5]);
  return entry;
}

}  // namespace

std::map<int, int> AccessLog::CountByStatus() const {
  std::map<int, int> counts;
  for (const AccessLogEntry& entry : entries) ++counts[entry.status];
  return counts;
}

std::set<int64_t> AccessLog::Connections() const {
  std::set<int64_t> connections;
  for (const AccessLogEntry& entry : entries) connections.insert(entry.connection);
  return connections;
}

double AccessLog::RequestsPerSecond(absl::Time from, absl::Time to) const {
  const auto in_window = std::count_if(entries.begin(), entries.end(), [&](const auto& entry) {
    return entry.time >= from && entry.time < to;
  });
  return static_cast<double>(in_window) / absl::ToDoubleSeconds(to - from);
}

absl::StatusOr<std::unique_ptr<NginxServer>> NginxServer::Start(Options options) {
  absl::Status valid = CheckQuotable("answer", options.answer, '\'');
  if (valid.ok()) {
    valid = CheckQuotable("pushback_retry_after", options.pushback_retry_after, '"');
  }
  if (!valid.ok()) return valid;
  std::unique_ptr<NginxServer> server;
  const absl::Status started = StartOnPickedPorts("nginx", [&]() -> absl::Status {
    std::string dir = "/tmp/switchboard-nginx-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) {
      return absl::InternalError("cannot create a directory for nginx");
    }
    // A loopback socket that listens and never accepts (/slow): the kernel
    // completes connections into its backlog, and nothing is ever answered.
    absl::StatusOr<LoopbackSocket> silent = ListenOnLoopback(128);
    if (!silent.ok()) {
      std::filesystem::remove_all(dir);
      return silent.status();
    }
    const int port = PickUnusedPort();
    // Two picks can return the same port (the first is closed before the
    // second): nginx would then serve both server blocks on one socket.
    int answer_port = 0;
    while ((!options.rate_limit.empty() || options.read_body) &&
           (answer_port == 0 || answer_port == port)) {
      answer_port = PickUnusedPort();
    }
    // Replacing a failed attempt's server removes its directory.
    server.reset(
        new NginxServer(options, std::move(dir), port, answer_port, silent->fd, silent->port));
    const absl::Status written = server->WriteFiles();
    if (!written.ok()) return written;
    return server->Launch();
  });
  if (!started.ok()) return started;
  return server;
}

NginxServer::~NginxServer() {
  Stop();
  close(silent_fd_);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string NginxServer::url(absl::string_view path) const {
  return absl::StrCat(options_.tls ? "https" : "http", "://127.0.0.1:", port_, path);
}

std::string NginxServer::ca_file() const { return absl::StrCat(dir_, "/cert.pem"); }

std::string NginxServer::LargeAnswer() const {
  const absl::string_view prefix = R"({"jsonrpc":"2.0","result":")";
  const absl::string_view suffix = R"(","id":1})";
  const size_t envelope = prefix.size() + suffix.size();
  const size_t padding =
      options_.large_answer_bytes > envelope ? options_.large_answer_bytes - envelope : 0;
  return absl::StrCat(prefix, std::string(padding, 'x'), suffix);
}

absl::Status NginxServer::WriteFiles() const {
  std::error_code error;
  std::filesystem::create_directory(absl::StrCat(dir_, "/temp"), error);
  std::ofstream(absl::StrCat(dir_, "/large.json")) << LargeAnswer();
  std::ofstream config(absl::StrCat(dir_, "/nginx.conf"));
  config << Config();
  config.close();
  if (error || !config) return absl::InternalError(absl::StrCat("cannot write files in ", dir_));
  if (!options_.tls) return absl::OkStatus();
  // An EC key is made in milliseconds; the certificate names 127.0.0.1 as
  // its subject alternative name, which clients verify.
  const RunResult made = Run({kOpensslBinary, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                              absl::StrCat(dir_, "/key.pem"), "-out", ca_file(), "-days", "2",
                              "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
  if (made.exit_code != 0) {
    return absl::InternalError(absl::StrCat("openssl req failed: ", made.stderr_text));
  }
  return absl::OkStatus();
}

std::string NginxServer::Config() const {
  const std::string answer = absl::StrCat("return 200 '", options_.answer, "';");
  const bool limited = !options_.rate_limit.empty();
  // `/` answers itself, or proxies to the answering upstream: the server at
  // proxy_to, or one of this nginx's own (behind limit_req, which cannot
  // share a location with `return`; or to read the body first).
  const bool proxied = limited || !options_.proxy_to.empty() || options_.read_body;
  const std::string answering =
      options_.proxy_to.empty() ? absl::StrCat("127.0.0.1:", answer_port_) : options_.proxy_to;
  // $0: directory, $1: port, $2: listen options, $3: what / does, $4:
  // pushback Retry-After, $5: pushback body, $6: silent port, $7: limit_req
  // zone and answering upstream, $8: the answering server, $9: TLS key and
  // certificate. ($$ is a literal $.)
  return absl::Substitute(
      R"(daemon off;
master_process off;
pid $0/nginx.pid;
lock_file $0/nginx.lock;
error_log $0/error.log warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $0/temp/body;
  proxy_temp_path $0/temp/proxy;
  fastcgi_temp_path $0/temp/fastcgi;
  uwsgi_temp_path $0/temp/uwsgi;
  scgi_temp_path $0/temp/scgi;
  log_format switchboard '$$msec $$status $$connection $$request_time $$server_protocol $$request_uri';
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  default_type application/json;
$7
  server {
    listen 127.0.0.1:$1$2;$9
    access_log $0/access.log switchboard;
    location / {
      if (-f $0/pushback) {
        add_header Retry-After "$4" always;
        return 429 '$5';
      }
      $3
    }
    location = /large {
      # A static file refuses POST (405); the redirect serves it as a GET.
      error_page 405 =200 /large.json;
      return 405;
    }
    location = /large.json {
      internal;
      root $0;
    }
    location = /slow {
      proxy_pass http://127.0.0.1:$6;
      proxy_read_timeout 1h;
    }
  }
$8
}
)",
      dir_, port_, absl::StrCat(options_.tls ? " ssl" : "", options_.http2 ? " http2" : ""),
      proxied ? absl::StrCat(limited ? absl::StrCat("limit_req zone=rpc burst=", options_.burst,
                                                    " nodelay;\n      limit_req_status 429;\n")
                                     : "",
                             "      proxy_pass http://answer;\n"
                             "      proxy_http_version 1.1;\n"
                             "      proxy_set_header Connection \"\";")
              : answer,
      options_.pushback_retry_after, kPushbackAnswer, silent_port_,
      absl::StrCat(limited ? absl::StrCat("  limit_req_zone $server_port zone=rpc:1m rate=",
                                          options_.rate_limit, ";\n")
                           : "",
                   proxied
                       ? absl::StrCat("  upstream answer { server ", answering, "; keepalive 16; }")
                       : ""),
      proxied && options_.proxy_to.empty()
          ? absl::StrCat("  server {\n    listen 127.0.0.1:", answer_port_,
                         ";\n    access_log off;\n    location / { ", answer, " }\n  }")
          : "",
      options_.tls ? absl::StrCat("\n    ssl_certificate ", ca_file(),
                                  ";\n    ssl_certificate_key ", dir_, "/key.pem;")
                   : "");
}

absl::Status NginxServer::Launch() {
  const std::string pid_path = absl::StrCat(dir_, "/nginx.pid");
  unlink(pid_path.c_str());
  // The error log outlives restarts: only what this run adds tells why it
  // failed.
  const std::string error_log_path = absl::StrCat(dir_, "/error.log");
  const size_t error_log_start = ReadTextFile(error_log_path).size();
  absl::StatusOr<Subprocess> process =
      Subprocess::Start({kNginxBinary, "-p", absl::StrCat(dir_, "/"), "-c",
                         absl::StrCat(dir_, "/nginx.conf"), "-e", error_log_path});
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  // nginx writes its pid file once it has bound every listening socket.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (absl::Now() < deadline) {
    int pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadTextFile(pid_path)), &pid) &&
        pid == process_->pid()) {
      return absl::OkStatus();
    }
    if (process_->Wait(absl::Milliseconds(20)).has_value()) {
      process_.reset();
      // nginx retries a bind for 2.5 s before it exits with "Address
      // already in use".
      return ExitedAtStartError("nginx", ReadTextFile(error_log_path).substr(error_log_start));
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("nginx on port ", port_, " did not start within ",
                                                  absl::FormatDuration(kStartTimeout)));
}

void NginxServer::Stop() {
  if (!process_) return;
  process_->Signal(SIGTERM);
  process_->Wait(kStartTimeout);
  process_.reset();  // SIGKILLs one that did not exit.
}

absl::Status NginxServer::Restart() {
  Stop();
  return RestartOnSamePorts("nginx", [this] { return Launch(); });
}

absl::Status NginxServer::SetPushback(bool on) {
  const std::string path = absl::StrCat(dir_, "/pushback");
  if (on) {
    std::ofstream flag(path);
    if (!flag) return absl::InternalError(absl::StrCat("cannot create ", path));
  } else if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("cannot remove ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<AccessLog> NginxServer::ReadAccessLog() const {
  AccessLog log;
  const std::string text = ReadTextFile(absl::StrCat(dir_, "/access.log"));
  // A last line without its newline is still being written.
  const absl::string_view complete(text.data(), text.rfind('\n') + 1);
  for (absl::string_view line : absl::StrSplit(complete, '\n', absl::SkipEmpty())) {
    std::optional<AccessLogEntry> entry = ParseAccessLogLine(line);
    if (!entry) return absl::DataLossError(absl::StrCat("unexpected access log line: ", line));
    log.entries.push_back(*std::move(entry));
  }
  return log;
}

absl::StatusOr<AccessLog> NginxServer::WaitForAccessLog(size_t entries,
                                                        absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<AccessLog> log = ReadAccessLog();
    if (!log.ok() || log->entries.size() >= entries) return log;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the access log has ", log->entries.size(), " entries after ",
                       absl::FormatDuration(timeout), ", not ", entries));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace switchboard::testing

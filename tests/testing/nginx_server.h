// NginxServer: a real nginx playing a rate-limited JSON-RPC provider, on
// loopback ports picked at run time, in a directory of its own.
//
// Used by the HTTP pool's and the JSON-RPC proxy's integration tests. The
// configuration is generated from Options; one server answers at:
//   /       the JSON-RPC answer (`return 200`), behind `limit_req` when a rate
//           limit is set: the limit sits in front of a `proxy_pass` to a
//           second server block that answers, because `return` runs before
//           `limit_req` would;
//   /large  a JSON-RPC answer of Options::large_answer_bytes bytes;
//   /slow   never answers: proxied to a port the harness listens on and
//           never accepts from.
// SetPushback(true) makes `/` answer 429 with a Retry-After header, as a
// provider pushing back, until SetPushback(false). Options also choose TLS
// (with a certificate made at start) and HTTP/2. nginx runs in the
// foreground without a master process (so no worker switches user), with
// keepalive_requests set high, and logs each request's time, status and
// connection number, which ReadAccessLog() parses. The destructor stops
// nginx and removes the directory.
//
// Not thread-safe: use one from the test's main thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

// One line of the access log: a request nginx answered (on the front
// server; the answering server behind limit_req does not log).
struct AccessLogEntry {
  absl::Time time;  // When the answer was sent ($msec).
  int status = 0;
  // nginx's serial number of the client connection ($connection): requests
  // with the same number came over one TCP connection (numbers start again
  // after Restart()).
  int64_t connection = 0;
  absl::Duration request_time;
  std::string protocol;  // "HTTP/1.1", "HTTP/2.0".
  std::string uri;       // As requested: "/", "/large", "/slow".
};

struct AccessLog {
  std::vector<AccessLogEntry> entries;

  // How many requests got each status.
  std::map<int, int> CountByStatus() const;
  // The distinct connections requests came over.
  std::set<int64_t> Connections() const;
  // Requests answered in [from, to), per second of that window.
  double RequestsPerSecond(absl::Time from, absl::Time to) const;
};

class NginxServer {
 public:
  // The body of a pushback answer (SetPushback).
  static constexpr char kPushbackAnswer[] =
      R"({"jsonrpc":"2.0","error":{"code":429,"message":"Too many requests"},"id":1})";

  struct Options {
    // The body of every 200 from `/`, as application/json. Must not contain
    // ', \ or $ (it goes into the configuration in single quotes).
    std::string answer = R"({"jsonrpc":"2.0","result":0,"id":1})";
    // limit_req in front of the answer, in nginx syntax ("100r/s", "6r/m");
    // empty: no limit. Requests past rate and burst get 429 at once
    // (nodelay).
    std::string rate_limit;
    int burst = 0;
    // "127.0.0.1:<port>" of a server that answers `/` in place of `answer`
    // (nginx proxies to it, behind limit_req when set, keeping connections
    // alive): a JSON-RPC provider that answers batches, which a fixed
    // answer cannot.
    std::string proxy_to;
    // Answer once the request's body has arrived in full, as a JSON-RPC
    // provider does (it reads the method there): `/` proxies to an
    // answering server of this nginx's own. Without it `return` answers
    // before reading the body, and closes an HTTP/2 stream whose body is
    // still on its way, which libcurl 7.88 can report as a stream error
    // without the answer (see HttpPoolImpl).
    bool read_body = false;
    // Serve https:// with a certificate for 127.0.0.1 made at start, which
    // is its own certificate authority (ca_file()).
    bool tls = false;
    // Listen with HTTP/2: negotiated through ALPN with tls, else cleartext
    // HTTP/2 only, which clients must speak with prior knowledge (an
    // HTTP/1.1 request fails).
    bool http2 = false;
    // The Retry-After value of pushback answers: delay-seconds or an
    // HTTP-date (no ", \ or $).
    std::string pushback_retry_after = "1";
    // Size of the answer at /large.
    size_t large_answer_bytes = 64 * 1024;
  };

  // Starts nginx on picked ports and waits until it listens. An nginx that
  // could not bind one (taken since it was picked) is started again on
  // other ports (StartOnPickedPorts).
  static absl::StatusOr<std::unique_ptr<NginxServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<NginxServer>> Start() { return Start(Options()); }

  ~NginxServer();

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // "http://127.0.0.1:<port><path>" (https:// with tls).
  std::string url(absl::string_view path = "/") const;

  // The certificate to trust for a tls server (PEM).
  std::string ca_file() const;

  // The exact body `/large` answers with.
  std::string LargeAnswer() const;

  // Stops nginx (SIGTERM: connections close at once) and waits for it to
  // exit.
  void Stop();

  // Starts nginx again on the same ports, configuration and access log, and
  // waits until it listens. A port taken since Stop() is tried again for a
  // while (RestartOnSamePorts).
  absl::Status Restart();

  // Turns the 429 pushback of `/` on or off, at once (nginx tests for a
  // file on every request).
  absl::Status SetPushback(bool on);

  // The access log as it is now.
  absl::StatusOr<AccessLog> ReadAccessLog() const;

  // Waits until the access log holds at least `entries` entries and returns
  // it: nginx writes a request's line once it has sent the answer and read
  // the rest of the request (an answer by `return` goes before the body is
  // read), so a client can see the answer before the line exists, and Stop()
  // in between loses the line. DEADLINE_EXCEEDED after `timeout`.
  absl::StatusOr<AccessLog> WaitForAccessLog(size_t entries,
                                             absl::Duration timeout = absl::Seconds(10)) const;

 private:
  NginxServer(Options options, std::string dir, int port, int answer_port, int silent_fd,
              int silent_port)
      : options_(std::move(options)),
        dir_(std::move(dir)),
        port_(port),
        answer_port_(answer_port),
        silent_fd_(silent_fd),
        silent_port_(silent_port) {}

  // Writes the configuration, the /large answer file and, with tls, a key
  // and certificate.
  absl::Status WriteFiles() const;
  std::string Config() const;
  absl::Status Launch();

  const Options options_;
  const std::string dir_;
  const int port_;
  const int answer_port_;  // The answering server behind limit_req or read_body.
  // A listening socket nobody accepts from: /slow's upstream.
  const int silent_fd_;
  const int silent_port_;
  std::optional<Subprocess> process_;
};

}  // namespace switchboard::testing

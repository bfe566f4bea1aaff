// WsProviderServer: a scripted WebSocket JSON-RPC provider (a Solana or
// Ethereum node's subscription endpoint) for integration tests, on loopback
// ports the kernel picks at run time.
//
// Used by the WebSocket subscription tests, the WebSocket client's tests
// (tests/integration/ws/, over ws:// and wss://) and tests/integration/http/
// ws_provider_server_test.cc, which tests the harness itself. It runs
// tests/testing/ws_provider.py (Debian's python3 with python3-websockets,
// which scripts/setup.sh installs) and drives it through the script's control
// port: what clients subscribed to (Stats), notifications with a result sent
// byte for byte (Notify), connections closed abruptly or cleanly, subscribes
// refused with a given error, connections frozen so their keepalive pings go
// unanswered, the close code each connection's client sent. It serves
// cleartext ws:// unless WsProviderOptions give it a certificate. See ws_provider.py for the wire
// behaviour. Tests share one provider per suite and Reset() it between tests; connection numbers
// then start again from 1, subscription ids do not.
//
// The control calls block, each for at most kControlTimeout; a provider that
// stops answering fails the call (DEADLINE_EXCEEDED or UNAVAILABLE) rather
// than hanging the test. The destructor kills the provider.
//
// Not thread-safe: use one from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

// A subscribe the provider answered with a subscription id (refused ones are
// not recorded).
struct WsSubscribe {
  int64_t conn = 0;    // The connection's number (from 1).
  std::string method;  // "slotSubscribe", "eth_subscribe".
  std::string params;  // Compact JSON text ("null" when absent).
  std::string sub;     // The id as JSON text: 1000, "0x...".
};

// An unsubscribe request, whether or not its id was live.
struct WsUnsubscribe {
  int64_t conn = 0;
  std::string method;  // "slotUnsubscribe", "eth_unsubscribe".
  std::string sub;     // Its first param as compact JSON text.
  bool known = false;  // A live subscription of that connection (answered true).
};

// What the provider saw since it started or was last reset.
struct WsProviderStats {
  int64_t opened = 0;                   // Connections accepted.
  std::vector<int64_t> open;            // Numbers of those still open, ascending.
  std::vector<WsSubscribe> subscribes;  // In order, open connections or not.
  std::vector<WsUnsubscribe> unsubscribes;
  std::map<int64_t, std::string> paths;           // Request path by connection.
  std::map<int64_t, std::string> authorizations;  // Authorization header, when sent.
  // Connections that ended, with the close code their client sent (1006:
  // none, the TCP connection just ended). A connection gets its entry once
  // its TCP connection is closed, which can be a moment after it leaves
  // `open`.
  std::map<int64_t, int> close_codes;

  // A one-line summary for failure messages.
  std::string DebugString() const;
};

// How WsProviderServer::Start runs the provider.
struct WsProviderOptions {
  // Both set: serve wss:// with this PEM certificate chain and its key
  // (TestCertificates::Issue makes them); both empty: cleartext ws://.
  std::string cert_file;
  std::string key_file;
};

class WsProviderServer {
 public:
  // How long a control call waits for the provider's answer.
  static constexpr absl::Duration kControlTimeout = absl::Seconds(10);

  // Starts the provider and waits (up to 10 s) until it listens. INTERNAL
  // with its stderr when it exits (python3-websockets missing, say, or a
  // certificate it cannot load); INVALID_ARGUMENT when only one of
  // cert_file and key_file is set.
  static absl::StatusOr<std::unique_ptr<WsProviderServer>> Start(
      const WsProviderOptions& options = WsProviderOptions());

  // The python3 that runs the provider (has the websockets module), for
  // tests that script a WebSocket client.
  static std::string PythonBinary();

  WsProviderServer(const WsProviderServer&) = delete;
  WsProviderServer& operator=(const WsProviderServer&) = delete;
  ~WsProviderServer();

  int port() const { return port_; }
  int control_port() const { return control_port_; }
  // "ws://127.0.0.1:<port>", "wss://..." when serving TLS (append a path as
  // wanted).
  std::string url() const;

  absl::StatusOr<WsProviderStats> Stats();

  // Sends one notification carrying `result_json` (raw JSON text, inserted
  // as is) to every live subscription made with `method` ("slotSubscribe",
  // "eth_subscribe") and, when given, with params equal as JSON to `params`.
  // Returns how many were sent. Notifications to one subscription arrive in
  // call order. The call waits while a client does not read its socket and
  // the provider's send buffer is full (DEADLINE_EXCEEDED after
  // kControlTimeout).
  absl::StatusOr<int> Notify(absl::string_view method, absl::string_view result_json,
                             std::optional<absl::string_view> params = std::nullopt);

  // Closes connection `conn` (all when unset) abruptly: the TCP connection
  // is aborted, no close frame; they leave Stats().open at once. Returns how
  // many.
  absl::StatusOr<int> Close(std::optional<int64_t> conn = std::nullopt);
  // Same with a close frame (1001, going away); they leave Stats().open when
  // the closing handshake ends (or 2 s later).
  absl::StatusOr<int> CloseClean(std::optional<int64_t> conn = std::nullopt);

  // Makes subscribes with `method` answer {"error": error_json} (raw JSON
  // text) from now on; nullopt stops refusing.
  absl::Status Refuse(absl::string_view method, std::optional<absl::string_view> error_json);

  // Stops reading every open connection: no pongs, no answers, so a
  // client's keepalive times out. Returns how many.
  absl::StatusOr<int> Freeze();

  // Aborts every connection and forgets records and refusals: `opened` is 0
  // again and the next connection is number 1; subscription ids go on from
  // where they were.
  absl::Status Reset();

  // Polls Stats() until `done(stats)` holds and returns those stats.
  // DEADLINE_EXCEEDED after `timeout`, naming `what` was awaited and the
  // last stats; a failing Stats() ends it with its status.
  absl::StatusOr<WsProviderStats> WaitFor(absl::FunctionRef<bool(const WsProviderStats&)> done,
                                          absl::Duration timeout = absl::Seconds(10),
                                          absl::string_view what = "the awaited condition");

 private:
  WsProviderServer(Subprocess process, int port, int control_port, bool tls)
      : process_(std::move(process)), port_(port), control_port_(control_port), tls_(tls) {}

  // Sends one request line (a JSON object) and returns the answer line; an
  // {"error":...} answer is INTERNAL. Drops the connection on any failure,
  // so a late answer is never taken for the next request's.
  absl::StatusOr<std::string> Call(absl::string_view request);
  absl::StatusOr<int> CallForCount(absl::string_view request, absl::string_view field);
  void Disconnect();

  Subprocess process_;
  const int port_;
  const int control_port_;
  const bool tls_;
  int control_fd_ = -1;
  std::string buffered_;  // Read past the last answer line.
};

}  // namespace switchboard::testing

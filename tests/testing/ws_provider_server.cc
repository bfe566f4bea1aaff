// WsProviderServer: starts tests/testing/ws_provider.py and drives it over
// its control port with a blocking loopback socket (see the header).
#include "tests/testing/ws_provider_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/upstream/json_rpc.h"

// Both set by tests/testing/CMakeLists.txt.
#if !defined(WS_PROVIDER_PYTHON3) || !defined(WS_PROVIDER_SCRIPT)
#error "WS_PROVIDER_PYTHON3 and WS_PROVIDER_SCRIPT must name python3 and ws_provider.py"
#endif

namespace switchboard::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(10);
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::string ConnField(std::optional<int64_t> conn) {
  return conn.has_value() ? absl::StrCat(",\"conn\":", *conn) : "";
}

// A stats_hex text field: "x" and the hex of its bytes.
absl::StatusOr<std::string> Unhex(absl::string_view token) {
  if (!absl::ConsumePrefix(&token, "x") || token.size() % 2 != 0) {
    return absl::InternalError(absl::StrCat("bad hex field in the provider's stats: ", token));
  }
  for (const char c : token) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InternalError(absl::StrCat("bad hex field in the provider's stats: ", token));
    }
  }
  return absl::HexStringToBytes(token);
}

absl::StatusOr<int64_t> Number(absl::string_view token) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(token, &value)) {
    return absl::InternalError(absl::StrCat("bad number in the provider's stats: ", token));
  }
  return value;
}

// Parses the answer to {"cmd":"stats_hex"} (format in ws_provider.py).
absl::StatusOr<WsProviderStats> ParseStats(absl::string_view line) {
  std::vector<absl::string_view> records = absl::StrSplit(line, '\t');
  if (records.empty() || records[0] != "STATS") {
    return absl::InternalError(absl::StrCat("unexpected stats answer: ", line));
  }
  WsProviderStats stats;
  for (size_t i = 1; i < records.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(records[i], ' ');
    const absl::Status bad =
        absl::InternalError(absl::StrCat("bad record in the provider's stats: ", records[i]));
    if (f.size() < 2) return bad;
    absl::StatusOr<int64_t> number = Number(f[1]);
    if (!number.ok()) return number.status();
    if (f[0] == "O" && f.size() == 2) {
      stats.opened = *number;
    } else if (f[0] == "C" && f.size() == 2) {
      stats.open.push_back(*number);
    } else if (f[0] == "S" && f.size() == 5) {
      absl::StatusOr<std::string> method = Unhex(f[2]);
      absl::StatusOr<std::string> params = Unhex(f[3]);
      absl::StatusOr<std::string> sub = Unhex(f[4]);
      if (!method.ok() || !params.ok() || !sub.ok()) return bad;
      stats.subscribes.push_back(
          WsSubscribe{*number, *std::move(method), *std::move(params), *std::move(sub)});
    } else if (f[0] == "U" && f.size() == 5) {
      absl::StatusOr<std::string> method = Unhex(f[2]);
      absl::StatusOr<std::string> sub = Unhex(f[3]);
      if (!method.ok() || !sub.ok() || (f[4] != "0" && f[4] != "1")) return bad;
      stats.unsubscribes.push_back(
          WsUnsubscribe{*number, *std::move(method), *std::move(sub), f[4] == "1"});
    } else if ((f[0] == "P" || f[0] == "A") && f.size() == 3) {
      absl::StatusOr<std::string> text = Unhex(f[2]);
      if (!text.ok()) return bad;
      (f[0] == "P" ? stats.paths : stats.authorizations)[*number] = *std::move(text);
    } else if (f[0] == "X" && f.size() == 3) {
      absl::StatusOr<int64_t> code = Number(f[2]);
      if (!code.ok()) return bad;
      stats.close_codes[*number] = static_cast<int>(*code);
    } else {
      return bad;
    }
  }
  return stats;
}

}  // namespace

std::string WsProviderStats::DebugString() const {
  std::vector<std::string> subs;
  for (const WsSubscribe& s : subscribes) {
    subs.push_back(absl::StrCat(s.conn, ":", s.method, "(", s.params, ")=", s.sub));
  }
  std::vector<std::string> unsubs;
  for (const WsUnsubscribe& u : unsubscribes) {
    unsubs.push_back(absl::StrCat(u.conn, ":", u.method, "(", u.sub, ")", u.known ? "" : "?"));
  }
  return absl::StrCat("opened=", opened, " open=[", absl::StrJoin(open, ","), "] subscribes=[",
                      absl::StrJoin(subs, " "), "] unsubscribes=[", absl::StrJoin(unsubs, " "),
                      "] close_codes=[", absl::StrJoin(close_codes, " ", absl::PairFormatter(":")),
                      "]");
}

std::string WsProviderServer::PythonBinary() { return WS_PROVIDER_PYTHON3; }

absl::StatusOr<std::unique_ptr<WsProviderServer>> WsProviderServer::Start(
    const WsProviderOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "WsProviderOptions: cert_file and key_file are set together or not at all");
  }
  const bool tls = !options.cert_file.empty();
  std::vector<std::string> argv = {PythonBinary(), WS_PROVIDER_SCRIPT};
  if (tls) argv.insert(argv.end(), {"--cert", options.cert_file, "--key", options.key_file});
  absl::StatusOr<Subprocess> process = Subprocess::Start(argv);
  if (!process.ok()) return process.status();
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    const std::string out = process->stdout_text();
    const size_t ready = out.find("READY ");
    const size_t end = ready == std::string::npos ? ready : out.find('\n', ready);
    if (end != std::string::npos) {
      std::vector<absl::string_view> words =
          absl::StrSplit(absl::string_view(out).substr(ready, end - ready), ' ');
      int port = 0;
      int control_port = 0;
      if (words.size() != 3 || !absl::SimpleAtoi(words[1], &port) ||
          !absl::SimpleAtoi(words[2], &control_port) || port <= 0 || control_port <= 0) {
        return absl::InternalError(absl::StrCat("ws_provider.py printed a bad READY line: ", out));
      }
      return std::unique_ptr<WsProviderServer>(
          new WsProviderServer(*std::move(process), port, control_port, tls));
    }
    if (process->Wait(kPollInterval).has_value()) {
      return absl::InternalError(
          absl::StrCat("ws_provider.py exited at start:\n", LogTail(process->stderr_text())));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("ws_provider.py did not print READY within ",
                                                      absl::FormatDuration(kStartTimeout), ":\n",
                                                      LogTail(process->stderr_text())));
    }
  }
}

WsProviderServer::~WsProviderServer() { Disconnect(); }  // process_ kills the provider.

std::string WsProviderServer::url() const {
  return absl::StrCat(tls_ ? "wss" : "ws", "://127.0.0.1:", port_);
}

void WsProviderServer::Disconnect() {
  if (control_fd_ >= 0) close(control_fd_);
  control_fd_ = -1;
  buffered_.clear();
}

absl::StatusOr<std::string> WsProviderServer::Call(absl::string_view request) {
  const absl::Time deadline = absl::Now() + kControlTimeout;
  if (control_fd_ < 0) {
    control_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(control_port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (control_fd_ < 0 ||
        connect(control_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      const int error = errno;
      Disconnect();
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ws_provider.py's control port ", control_port_, ": ",
                       std::strerror(error), "; its stderr:\n", LogTail(process_.stderr_text())));
    }
  }
  const std::string line = absl::StrCat(request, "\n");
  // Timeouts come from poll() below; sending a short line to loopback does
  // not block unless the provider stopped reading for a long time.
  for (size_t sent = 0; sent < line.size();) {
    const ssize_t n = send(control_fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      Disconnect();
      return absl::UnavailableError(
          absl::StrCat("ws_provider.py's control connection failed: ", std::strerror(error)));
    }
    sent += static_cast<size_t>(n);
  }
  while (true) {
    const size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      std::string answer = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      if (absl::StartsWith(answer, "{\"error\":")) {
        return absl::InternalError(absl::StrCat("ws_provider.py refused ", request, ": ", answer));
      }
      return answer;
    }
    const absl::Duration left = deadline - absl::Now();
    pollfd readable{control_fd_, POLLIN, 0};
    const int ready =
        left > absl::ZeroDuration()
            ? poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1)
            : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      Disconnect();
      return absl::DeadlineExceededError(absl::StrCat("ws_provider.py did not answer ", request,
                                                      " within ",
                                                      absl::FormatDuration(kControlTimeout)));
    }
    char chunk[16 * 1024];
    const ssize_t n = ready > 0 ? recv(control_fd_, chunk, sizeof(chunk), 0) : -1;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Disconnect();
      return absl::UnavailableError(
          absl::StrCat("ws_provider.py closed its control connection during ", request,
                       "; its stderr:\n", LogTail(process_.stderr_text())));
    }
    buffered_.append(chunk, static_cast<size_t>(n));
  }
}

absl::StatusOr<int> WsProviderServer::CallForCount(absl::string_view request,
                                                   absl::string_view field) {
  absl::StatusOr<std::string> answer = Call(request);
  if (!answer.ok()) return answer.status();
  absl::string_view rest = *answer;
  const std::string key = absl::StrCat("\"", field, "\":");
  const size_t at = rest.find(key);
  int count = 0;
  if (at == absl::string_view::npos) {
    return absl::InternalError(absl::StrCat("unexpected answer to ", request, ": ", *answer));
  }
  rest.remove_prefix(at + key.size());
  rest = absl::StripLeadingAsciiWhitespace(rest);
  const size_t digits = rest.find_first_not_of("0123456789");
  if (!absl::SimpleAtoi(rest.substr(0, digits), &count)) {
    return absl::InternalError(absl::StrCat("unexpected answer to ", request, ": ", *answer));
  }
  return count;
}

absl::StatusOr<WsProviderStats> WsProviderServer::Stats() {
  absl::StatusOr<std::string> answer = Call(R"({"cmd":"stats_hex"})");
  if (!answer.ok()) return answer.status();
  return ParseStats(*answer);
}

absl::StatusOr<int> WsProviderServer::Notify(absl::string_view method,
                                             absl::string_view result_json,
                                             std::optional<absl::string_view> params) {
  return CallForCount(
      absl::StrCat(
          R"({"cmd":"notify","method":)", upstream::JsonString(method),
          params.has_value() ? absl::StrCat(",\"params\":", upstream::JsonString(*params)) : "",
          ",\"result\":", upstream::JsonString(result_json), "}"),
      "sent");
}

absl::StatusOr<int> WsProviderServer::Close(std::optional<int64_t> conn) {
  return CallForCount(absl::StrCat(R"({"cmd":"close")", ConnField(conn), "}"), "closed");
}

absl::StatusOr<int> WsProviderServer::CloseClean(std::optional<int64_t> conn) {
  return CallForCount(absl::StrCat(R"({"cmd":"close_clean")", ConnField(conn), "}"), "closed");
}

absl::Status WsProviderServer::Refuse(absl::string_view method,
                                      std::optional<absl::string_view> error_json) {
  return Call(absl::StrCat(
                  R"({"cmd":"refuse","method":)", upstream::JsonString(method), ",\"error\":",
                  error_json.has_value() ? upstream::JsonString(*error_json) : "null", "}"))
      .status();
}

absl::StatusOr<int> WsProviderServer::Freeze() {
  return CallForCount(R"({"cmd":"freeze"})", "frozen");
}

absl::Status WsProviderServer::Reset() { return Call(R"({"cmd":"reset"})").status(); }

absl::StatusOr<WsProviderStats> WsProviderServer::WaitFor(
    absl::FunctionRef<bool(const WsProviderStats&)> done, absl::Duration timeout,
    absl::string_view what) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<WsProviderStats> stats = Stats();
    if (!stats.ok() || done(*stats)) return stats;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the WebSocket provider did not reach ", what,
                                                      " within ", absl::FormatDuration(timeout),
                                                      "; last stats: ", stats->DebugString()));
    }
    absl::SleepFor(kPollInterval);
  }
}

}  // namespace switchboard::testing

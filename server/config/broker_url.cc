#include "server/config/broker_url.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/config/listen_address.h"

namespace switchboard::config {
namespace {

constexpr absl::string_view kMemoryUrl = "memory://";
constexpr absl::string_view kRedisScheme = "redis://";
constexpr absl::string_view kExpectedForms =
    "expected memory:// or redis://[user:password@]host:port[/db]";

absl::StatusOr<BrokerUrl> ParseRedisUrl(absl::string_view rest) {
  BrokerUrl url;
  url.scheme = BrokerUrl::Scheme::kRedis;
  // The password may contain '@', so the credentials end at the last one.
  const size_t at = rest.rfind('@');
  if (at != absl::string_view::npos) {
    absl::string_view credentials = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const size_t colon = credentials.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis credentials must be user:password or :password before '@'; ", kExpectedForms));
    }
    url.user = std::string(credentials.substr(0, colon));
    url.password = std::string(credentials.substr(colon + 1));
  }
  absl::string_view address = rest;
  const size_t slash = rest.find('/');
  if (slash != absl::string_view::npos) {
    address = rest.substr(0, slash);
    absl::string_view db = rest.substr(slash + 1);
    if (db.empty() || !std::all_of(db.begin(), db.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(db, &url.db)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the redis database after '/' must be a number; ", kExpectedForms));
    }
  }
  absl::StatusOr<HostPort> host_port = ParseHostPort(address);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("redis address ", host_port.status().message()));
  }
  if (host_port->port == 0) {
    return absl::InvalidArgumentError("the redis port must be from 1 to 65535");
  }
  url.host = std::move(host_port->host);
  url.port = host_port->port;
  return url;
}

}  // namespace

std::string BrokerUrl::Redacted() const {
  if (scheme == Scheme::kMemory) return std::string(kMemoryUrl);
  std::string redacted(kRedisScheme);
  if (!user.empty() || !password.empty()) {
    absl::StrAppend(&redacted, user, password.empty() ? "" : ":***", "@");
  }
  const bool ipv6 = host.find(':') != std::string::npos;
  absl::StrAppend(&redacted, ipv6 ? "[" : "", host, ipv6 ? "]" : "", ":", port, "/", db);
  return redacted;
}

absl::StatusOr<BrokerUrl> ParseBrokerUrl(absl::string_view url) {
  if (url == kMemoryUrl) return BrokerUrl{};
  if (absl::ConsumePrefix(&url, kRedisScheme)) return ParseRedisUrl(url);
  if (absl::StartsWith(url, kMemoryUrl)) {
    return absl::InvalidArgumentError("memory:// takes no host, path or options");
  }
  // Only the scheme is echoed: the rest may hold a password.
  const size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not a URL; ", kExpectedForms));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported scheme \"",
                                                 absl::CHexEscape(url.substr(0, scheme_end)),
                                                 "://\"; ", kExpectedForms));
}

}  // namespace switchboard::config

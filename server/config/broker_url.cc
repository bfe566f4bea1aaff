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
constexpr absl::string_view kAmqpScheme = "amqp://";
constexpr absl::string_view kAmqpsScheme = "amqps://";
constexpr absl::string_view kExpectedForms =
    "expected memory://, redis://[user:password@]host:port[/db] or "
    "amqp[s]://[user:password@]host[:port][/vhost]";
constexpr uint16_t kAmqpPort = 5672;
constexpr uint16_t kAmqpsPort = 5671;
constexpr absl::string_view kAmqpDefaultCredential = "guest";

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

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the %XX escapes of `text`. `what` names the part in the error,
// which never repeats the text (it may be the password).
absl::StatusOr<std::string> PercentDecode(absl::string_view text, absl::string_view what) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      decoded.push_back(text[i]);
      continue;
    }
    const int high = i + 2 < text.size() ? HexValue(text[i + 1]) : -1;
    const int low = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
    if (high < 0 || low < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the amqp ", what, " has a '%' not followed by two hex digits; ", kExpectedForms));
    }
    decoded.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return decoded;
}

// The inverse of PercentDecode: every byte but the unreserved ones escaped.
std::string PercentEncode(absl::string_view text) {
  std::string encoded;
  for (char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded.push_back(c);
    } else {
      constexpr char kHexDigits[] = "0123456789ABCDEF";
      const auto byte = static_cast<unsigned char>(c);
      encoded.push_back('%');
      encoded.push_back(kHexDigits[byte >> 4]);
      encoded.push_back(kHexDigits[byte & 0xF]);
    }
  }
  return encoded;
}

// `host[:port]` or `[ipv6][:port]` of an amqp URL. `echo`: the address may
// appear in errors.
absl::Status ParseAmqpAddress(absl::string_view address, bool echo, BrokerUrl& url) {
  const std::string quoted =
      echo ? absl::StrCat(" \"", absl::CHexEscape(address), "\"") : std::string();
  absl::string_view host = address;
  absl::string_view port;
  bool has_port = false;
  if (absl::ConsumePrefix(&host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("the amqp address", quoted, " has '[' without ']'; ", kExpectedForms));
    }
    absl::string_view after = host.substr(close + 1);
    host = host.substr(0, close);
    if (!after.empty()) {
      if (!absl::ConsumePrefix(&after, ":")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the amqp address", quoted, " must be [ipv6] or [ipv6]:port; ", kExpectedForms));
      }
      port = after;
      has_port = true;
    }
  } else if (const size_t colon = host.find(':'); colon != absl::string_view::npos) {
    if (host.find(':', colon + 1) != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("the amqp address", quoted,
                       " has more than one ':' (write IPv6 hosts as [::1]); ", kExpectedForms));
    }
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    has_port = true;
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the amqp URL has no host; ", kExpectedForms));
  }
  if (has_port) {
    uint32_t number = 0;
    if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port, &number) || number == 0 || number > 65535) {
      return absl::InvalidArgumentError("the amqp port must be from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(number);
  }
  url.host = std::string(host);
  return absl::OkStatus();
}

absl::StatusOr<BrokerUrl> ParseAmqpUrl(absl::string_view rest, bool tls) {
  BrokerUrl url;
  url.scheme = BrokerUrl::Scheme::kAmqp;
  url.tls = tls;
  url.port = tls ? kAmqpsPort : kAmqpPort;
  url.user = std::string(kAmqpDefaultCredential);
  url.password = std::string(kAmqpDefaultCredential);
  url.vhost = "/";
  // The authority ends at the first '/' (the AMQP URI spec escapes '/' in
  // credentials), the credentials at its last '@'.
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view path =
      slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash + 1);
  const size_t at = authority.rfind('@');
  const bool has_credentials = at != absl::string_view::npos;
  if (has_credentials) {
    absl::string_view credentials = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const size_t colon = credentials.find(':');
    auto user = PercentDecode(credentials.substr(0, colon), "user");
    if (!user.ok()) return user.status();
    url.user = *std::move(user);
    url.password.clear();
    if (colon != absl::string_view::npos) {
      auto password = PercentDecode(credentials.substr(colon + 1), "password");
      if (!password.ok()) return password.status();
      url.password = *std::move(password);
    }
  }
  // The query may follow the path or the authority directly.
  if (path.find('?') != absl::string_view::npos ||
      (slash == absl::string_view::npos && authority.find('?') != absl::string_view::npos)) {
    return absl::InvalidArgumentError(
        "amqp URL query parameters are not supported; set broker.amqp instead");
  }
  if (path.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the amqp vhost must be one path segment (write '/' inside it as %2F); ", kExpectedForms));
  }
  if (!path.empty()) {
    auto vhost = PercentDecode(path, "vhost");
    if (!vhost.ok()) return vhost.status();
    url.vhost = *std::move(vhost);
  }
  // A raw '/' in the password would cut it into the address: quote the
  // address only when the URL has no '@' at all.
  absl::Status address =
      ParseAmqpAddress(authority, rest.find('@') == absl::string_view::npos, url);
  if (!address.ok()) return address;
  return url;
}

}  // namespace

std::string BrokerUrl::Redacted() const {
  if (scheme == Scheme::kMemory) return std::string(kMemoryUrl);
  if (scheme == Scheme::kAmqp) {
    const bool ipv6 = host.find(':') != std::string::npos;
    return absl::StrCat(tls ? kAmqpsScheme : kAmqpScheme, PercentEncode(user),
                        password.empty() ? "" : ":***", "@", ipv6 ? "[" : "", host, ipv6 ? "]" : "",
                        ":", port, "/", vhost == "/" ? "" : PercentEncode(vhost));
  }
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
  if (absl::ConsumePrefix(&url, kAmqpScheme)) return ParseAmqpUrl(url, /*tls=*/false);
  if (absl::ConsumePrefix(&url, kAmqpsScheme)) return ParseAmqpUrl(url, /*tls=*/true);
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

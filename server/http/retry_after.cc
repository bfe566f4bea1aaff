#include "server/http/retry_after.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace switchboard::http {

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) {
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(value, &seconds)) return std::nullopt;
    return absl::Seconds(seconds);
  }
  // curl's date parser knows every HTTP-date form and rejects anything else.
  const time_t date = curl_getdate(std::string(value).c_str(), nullptr);
  if (date == -1) return std::nullopt;
  return std::max(absl::FromTimeT(date) - now, absl::ZeroDuration());
}

}  // namespace switchboard::http

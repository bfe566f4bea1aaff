// ParseRetryAfter on arbitrary header values (delay seconds or an HTTP
// date): a delay or nothing, never a crash, and never a negative delay.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/http/retry_after.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view value(reinterpret_cast<const char*>(data), size);
  const std::optional<absl::Duration> delay =
      switchboard::http::ParseRetryAfter(value, absl::FromUnixSeconds(1700000000));
  if (delay.has_value() && *delay < absl::ZeroDuration()) std::abort();
  return 0;
}

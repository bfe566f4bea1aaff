// Levelled, one-line-per-event logging to stderr.
//
//   SB_LOG(kInfo, "listening on ", address);
//
// Each event is formatted into one line and written with a single write(2),
// so lines from different threads never interleave. The arguments are only
// formatted when the level is enabled. Never log tokens or URLs with
// credentials: redact them first.
#pragma once

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace switchboard::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Process-wide threshold; events below it are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes "<RFC3339 UTC time> <L> <message>\n".
void LogLine(LogLevel level, absl::string_view message);

}  // namespace switchboard::common

#define SB_LOG(level, ...)                                                         \
  do {                                                                             \
    if (::switchboard::common::LogEnabled(::switchboard::common::LogLevel::level)) \
      ::switchboard::common::LogLine(::switchboard::common::LogLevel::level,       \
                                     ::absl::StrCat(__VA_ARGS__));                 \
  } while (false)

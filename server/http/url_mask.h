// MaskUrl: a URL fit for logs, error messages and metric labels.
//
// Providers put API keys in URLs: in the path (https://host/v2/<key>), in the
// query (?api-key=<key>) or as user info. The HTTP pool names URLs through
// this in every status it returns, and the proxy uses it for upstream labels.
// Pure; thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace switchboard::http {

// The rule, simple enough to trust: the scheme, host and port are kept; user
// info is dropped; every non-empty path segment becomes "***"; each query
// parameter keeps its name and its value becomes "***" (a parameter without
// '=' becomes "***"); the fragment is dropped. Text without "<scheme>://" is
// "***" entirely.
//
//   https://user:pw@host:8443/v2/abcd1234?key=xyz&flag#top
//     -> https://host:8443/***/***?key=***&***
std::string MaskUrl(absl::string_view url);

}  // namespace switchboard::http

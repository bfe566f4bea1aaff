#include "server/http/url_mask.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace switchboard::http {
namespace {

constexpr absl::string_view kMask = "***";

// RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool IsScheme(absl::string_view scheme) {
  if (scheme.empty() || !absl::ascii_isalpha(scheme[0])) return false;
  for (char c : scheme) {
    if (!absl::ascii_isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

std::string MaskSegment(absl::string_view segment) {
  return segment.empty() ? "" : std::string(kMask);
}

std::string MaskParameter(absl::string_view parameter) {
  const size_t equals = parameter.find('=');
  if (equals == absl::string_view::npos) return std::string(kMask);
  return absl::StrCat(parameter.substr(0, equals + 1), kMask);
}

}  // namespace

std::string MaskUrl(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos || !IsScheme(url.substr(0, scheme_end))) {
    return std::string(kMask);
  }
  absl::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find('#'));
  const size_t authority_end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, authority_end);
  absl::string_view path_and_query =
      authority_end == absl::string_view::npos ? "" : rest.substr(authority_end);
  const size_t user_info_end = authority.rfind('@');
  if (user_info_end != absl::string_view::npos) authority.remove_prefix(user_info_end + 1);

  const size_t query_start = path_and_query.find('?');
  const absl::string_view path = path_and_query.substr(0, query_start);
  std::string masked = absl::StrCat(url.substr(0, scheme_end + 3), authority);
  if (!path.empty()) {
    // The path starts with '/', so its first piece is the empty one before it.
    std::vector<std::string> segments;
    for (absl::string_view segment : absl::StrSplit(path, '/')) {
      segments.push_back(MaskSegment(segment));
    }
    absl::StrAppend(&masked, absl::StrJoin(segments, "/"));
  }
  if (query_start != absl::string_view::npos) {
    std::vector<std::string> parameters;
    for (absl::string_view parameter :
         absl::StrSplit(path_and_query.substr(query_start + 1), '&', absl::SkipEmpty())) {
      parameters.push_back(MaskParameter(parameter));
    }
    absl::StrAppend(&masked, "?", absl::StrJoin(parameters, "&"));
  }
  return masked;
}

}  // namespace switchboard::http

// MaskUrl on arbitrary strings: a printable result, never a crash, and a
// password given in the URL's userinfo never survives masking.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/http/url_mask.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  switchboard::http::MaskUrl(url);
  // The same input with a planted password in the user info: it must be
  // masked (unless the input itself holds that text, in a host name say).
  constexpr char kPassword[] = "Pl4ntedPassw0rd";
  if (absl::StrContains(url, kPassword)) return 0;
  const std::string with_secret = absl::StrCat("https://user:", kPassword, "@", url);
  if (absl::StrContains(switchboard::http::MaskUrl(with_secret), kPassword)) std::abort();
  return 0;
}

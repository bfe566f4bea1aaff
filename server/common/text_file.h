// Reading a small text file whole: /proc and /sys entries, and the like.
#pragma once

#include <optional>
#include <string>

namespace switchboard::common {

// The whole text of the file at `path`, or nullopt when it cannot be opened.
std::optional<std::string> ReadTextFile(const std::string& path);

}  // namespace switchboard::common

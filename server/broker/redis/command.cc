#include "server/broker/redis/command.h"

#include <cassert>

#include "absl/strings/str_cat.h"

namespace switchboard::broker::redis {

Command::Command(size_t argc) : wire_(absl::StrCat("*", argc, "\r\n")), remaining_(argc) {}

Command Command::Of(std::initializer_list<absl::string_view> args) {
  Command command(args.size());
  for (absl::string_view arg : args) command.Add(arg);
  return command;
}

Command& Command::Add(absl::string_view arg) {
  assert(remaining_ > 0 && "more arguments than declared");
  if (name_.empty()) name_ = std::string(arg);
  --remaining_;
  absl::StrAppend(&wire_, "$", arg.size(), "\r\n", arg, "\r\n");
  return *this;
}

Command& Command::Add(int64_t arg) { return Add(absl::StrCat(arg)); }

const std::string& Command::wire() const {
  assert(remaining_ == 0 && "fewer arguments than declared");
  return wire_;
}

}  // namespace switchboard::broker::redis

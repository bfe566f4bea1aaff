// Command: one Redis command, encoded once in its wire form (a RESP array of
// bulk strings), ready to be appended to a connection's output buffer.
//
// Built by the Redis backend on whichever thread prepares the command (the
// broker's dispatcher), then moved to the I/O dispatcher, so the I/O thread
// only copies bytes. Arguments are binary-safe.
//
//   Command xadd(6);
//   xadd.Add("XADD").Add(topic).Add("*").Add("p").Add(payload)...;
//   Command ping = Command::Of({"PING"});
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/string_view.h"

namespace switchboard::broker::redis {

class Command {
 public:
  // A command of exactly `argc` arguments, to be added with Add().
  explicit Command(size_t argc);

  // A command of the given arguments.
  static Command Of(std::initializer_list<absl::string_view> args);

  Command& Add(absl::string_view arg);
  Command& Add(int64_t arg);

  // The encoded command. Every declared argument must have been added.
  const std::string& wire() const;

  // The first argument, upper case as written: for logs and errors.
  absl::string_view name() const { return name_; }

 private:
  std::string wire_;
  std::string name_;
  size_t remaining_;
};

}  // namespace switchboard::broker::redis

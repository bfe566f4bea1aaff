#include "server/broker/redis/command.h"

#include <string>

#include "gtest/gtest.h"

namespace switchboard::broker::redis {
namespace {

using std::string_literals::operator""s;

TEST(CommandTest, EncodesEachArgumentAsABulkString) {
  const Command command = Command::Of({"SET", "key", "value"});
  EXPECT_EQ(command.wire(), "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
  EXPECT_EQ(command.name(), "SET");
}

TEST(CommandTest, ArgumentsAreBinarySafe) {
  const std::string binary("a\0b\r\n", 5);
  const Command command = Command::Of({"PUBLISH", "", binary});
  EXPECT_EQ(command.wire(), "*3\r\n$7\r\nPUBLISH\r\n$0\r\n\r\n$5\r\na\0b\r\n\r\n"s);
}

TEST(CommandTest, SizedCommandTakesStringsAndIntegers) {
  Command command(4);
  command.Add("XADD").Add("t").Add(int64_t{-12}).Add(int64_t{1000000});
  EXPECT_EQ(command.wire(), "*4\r\n$4\r\nXADD\r\n$1\r\nt\r\n$3\r\n-12\r\n$7\r\n1000000\r\n");
}

}  // namespace
}  // namespace switchboard::broker::redis

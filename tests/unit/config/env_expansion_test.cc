#include "server/config/env_expansion.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::Eq;

EnvLookup FakeEnv(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const std::string& name) -> std::optional<std::string> {
    auto it = variables.find(name);
    if (it == variables.end()) return std::nullopt;
    return it->second;
  };
}

absl::StatusOr<std::string> Expand(absl::string_view text) {
  return ExpandEnvReferences(text, FakeEnv({{"HOST", "10.0.0.1"},
                                            {"PORT", "6379"},
                                            {"EMPTY", ""},
                                            {"_UNDER_1", "u"},
                                            {"NESTED", "${HOST}"}}));
}

// The expansion of `text`, or the error message prefixed with "error: ".
std::string Expanded(absl::string_view text) {
  absl::StatusOr<std::string> expanded = Expand(text);
  return expanded.ok() ? *expanded : "error: " + std::string(expanded.status().message());
}

TEST(EnvExpansionTest, LeavesTextWithoutReferencesAlone) {
  EXPECT_EQ(Expanded(""), "");
  EXPECT_EQ(Expanded("plain text"), "plain text");
}

TEST(EnvExpansionTest, ReplacesReferencesAnywhereInTheText) {
  EXPECT_EQ(Expanded("${HOST}"), "10.0.0.1");
  EXPECT_EQ(Expanded("redis://${HOST}:${PORT}/0"), "redis://10.0.0.1:6379/0");
  EXPECT_EQ(Expanded("${HOST}${PORT}"), "10.0.0.16379");
  EXPECT_EQ(Expanded("${_UNDER_1}"), "u");
}

TEST(EnvExpansionTest, AnEmptyVariableIsSet) { EXPECT_EQ(Expanded("a${EMPTY}b"), "ab"); }

TEST(EnvExpansionTest, ValuesAreNotExpandedAgain) { EXPECT_EQ(Expanded("${NESTED}"), "${HOST}"); }

TEST(EnvExpansionTest, DoubleDollarBraceIsALiteral) {
  EXPECT_EQ(Expanded("$${HOST}"), "${HOST}");
  EXPECT_EQ(Expanded("a$${b}${PORT}"), "a${b}6379");
}

TEST(EnvExpansionTest, OtherDollarsAreKept) {
  EXPECT_EQ(Expanded("pa$$word$"), "pa$$word$");
  EXPECT_EQ(Expanded("$HOST"), "$HOST");
}

TEST(EnvExpansionTest, UnsetVariableIsAnErrorNamingIt) {
  EXPECT_THAT(Expand("x${BURN_TOKEN}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 Eq("environment variable BURN_TOKEN is not set")));
}

TEST(EnvExpansionTest, MalformedReferencesAreErrors) {
  EXPECT_THAT(Expand("${HOST"), StatusIs(absl::StatusCode::kInvalidArgument,
                                         Eq("unterminated \"${\": expected \"${NAME}\"")));
  EXPECT_THAT(Expand("${}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                      Eq("\"${}\" is not a valid environment variable reference")));
  EXPECT_THAT(Expand("${1ABC}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("\"${1ABC}\" is not a valid environment variable reference")));
  EXPECT_THAT(Expand("${A-B}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("\"${A-B}\" is not a valid environment variable reference")));
}

TEST(EnvExpansionTest, ProcessEnvReadsTheEnvironment) {
  ASSERT_EQ(setenv("SWITCHBOARD_CONFIG_TEST_VAR", "value", 1), 0);
  ASSERT_EQ(unsetenv("SWITCHBOARD_CONFIG_TEST_UNSET"), 0);
  EnvLookup env = ProcessEnv();
  EXPECT_EQ(env("SWITCHBOARD_CONFIG_TEST_VAR"), std::optional<std::string>("value"));
  EXPECT_EQ(env("SWITCHBOARD_CONFIG_TEST_UNSET"), std::nullopt);
  absl::StatusOr<std::string> expanded =
      ExpandEnvReferences("<${SWITCHBOARD_CONFIG_TEST_VAR}>", env);
  ASSERT_THAT(expanded, IsOk());
  EXPECT_EQ(*expanded, "<value>");
}

}  // namespace
}  // namespace switchboard::config

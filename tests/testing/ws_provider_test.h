// WsProviderTest: a gtest fixture for suites that talk to the scripted
// WebSocket provider. The suite shares one WsProviderServer (started once,
// as every real server in the tests), reset before each test, in provider_.
// A suite that overrides SetUp() calls WsProviderTest::SetUp() first.
#pragma once

#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/ws_provider_server.h"

namespace switchboard::testing {

class WsProviderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<WsProviderServer>> provider = WsProviderServer::Start();
    if (provider.ok()) provider_ = *std::move(provider);
  }
  static void TearDownTestSuite() { provider_.reset(); }

  void SetUp() override {
    ASSERT_NE(provider_, nullptr) << "the WebSocket provider did not start";
    ASSERT_THAT(provider_->Reset(), IsOk());
  }

  static inline std::unique_ptr<WsProviderServer> provider_;
};

}  // namespace switchboard::testing

// RabbitMqSuite: the base of a test fixture whose tests share one RabbitMQ
// node (tests/testing/rabbitmq_server.h). A node takes seconds to boot, so it
// starts once per suite, before the suite's first test, and is killed (its
// directory removed) after the last; tests keep apart by naming their
// exchanges and queues after themselves. A test of a suite whose node did
// not start fails in SetUp(), saying why.
//
// Suites run one after another, so the suites of one binary take turns on
// the one static node. Main thread only, as RabbitMqServer.
#pragma once

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/rabbitmq_server.h"

namespace switchboard::testing {

class RabbitMqSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<RabbitMqServer>> server = RabbitMqServer::Start();
    if (!server.ok()) {
      start_error() = server.status();
      return;
    }
    node() = *std::move(server);
    RecordProperty("rabbitmq_startup_ms",
                   static_cast<int>(absl::ToInt64Milliseconds(node()->startup_time())));
  }

  static void TearDownTestSuite() {
    node().reset();
    start_error() = absl::OkStatus();
  }

  void SetUp() override { ASSERT_TRUE(has_node()) << "no RabbitMQ node: " << start_error(); }

  static bool has_node() { return node() != nullptr; }
  // The suite's node; only while has_node().
  static RabbitMqServer& server() { return *node(); }

 private:
  static std::unique_ptr<RabbitMqServer>& node() {
    static auto* const node = new std::unique_ptr<RabbitMqServer>();
    return *node;
  }
  static absl::Status& start_error() {
    static auto* const error = new absl::Status();
    return *error;
  }
};

}  // namespace switchboard::testing

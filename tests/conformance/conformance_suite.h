// The broker conformance suite's fixture: one broker per test, on a
// dispatcher driven by a SimulatedClock, from the backend under test.
//
// Tests live in durable_topics_test.cc, delivery_order_test.cc,
// ordering_keys_test.cc and ephemeral_topics_test.cc; backends instantiate the suite (see
// conformance_backend.h). Every topic a test uses is declared in
// ConformanceTopics() or is an undeclared, hence durable, name.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/broker/broker.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/conformance/conformance_backend.h"
#include "tests/testing/recording_sinks.h"

namespace switchboard::testing {

// The topic declarations every conformance test runs with.
std::vector<broker::TopicDeclaration> ConformanceTopics();

// The dedup window of the topic "dedup.short" (the others keep the default,
// minutes).
inline constexpr absl::Duration kShortDedupWindow = absl::Milliseconds(300);

class BrokerConformanceTest : public ::testing::TestWithParam<BackendUnderTest> {
 protected:
  BrokerConformanceTest();
  void SetUp() override;
  void TearDown() override;

  // Publishes and waits for the ids; a failure fails the test.
  std::vector<std::string> Publish(const std::string& topic,
                                   std::vector<broker::OutgoingMessage> messages);
  // Publishes `count` messages with payloads "<prefix>0", "<prefix>1", ...
  std::vector<std::string> PublishNumbered(const std::string& topic, int count,
                                           const std::string& prefix = "m");
  absl::StatusOr<std::vector<std::string>> TryPublish(
      const std::string& topic, std::vector<broker::OutgoingMessage> messages);

  // Subscribes `sink`, attaches it and waits for OnSubscribed(). Null (and a
  // test failure) when the broker refuses.
  std::unique_ptr<broker::Subscription> Subscribe(absl::string_view topic,
                                                  RecordingSubscriberSink& sink);

  // Joins `group`. Null (and a test failure) when the broker refuses.
  std::unique_ptr<broker::ConsumerSession> Consume(
      const std::string& topic, const std::string& group, RecordingConsumerSink& sink,
      uint32_t max_in_flight, absl::Duration ack_deadline = absl::ZeroDuration());

  // Settles through `session` and waits for the per-item result.
  broker::LeaseUpdateResult Settle(broker::ConsumerSession& session, RecordingConsumerSink& sink,
                                   broker::LeaseUpdate update);
  // Acks `deliveries`, expecting every ack to succeed.
  void Ack(broker::ConsumerSession& session, RecordingConsumerSink& sink,
           const std::vector<broker::Delivery>& deliveries);
  // Nacks `delivery` (after `delay`), expecting the nack to succeed.
  void Nack(broker::ConsumerSession& session, RecordingConsumerSink& sink,
            const broker::Delivery& delivery, absl::Duration delay = absl::ZeroDuration());

  void Quiesce() { backend_->Quiesce(); }
  void Advance(absl::Duration d) { clock_.Advance(d); }

  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  RecordingObserver observer_;
  std::unique_ptr<ConformanceBackend> backend_;
  std::unique_ptr<broker::Broker> broker_;
};

}  // namespace switchboard::testing

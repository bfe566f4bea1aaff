#include "tests/testing/broker_calls.h"

#include "absl/strings/str_cat.h"

namespace switchboard::testing {

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

std::vector<std::string> Numbered(absl::string_view prefix, int count) {
  std::vector<std::string> payloads;
  for (int i = 0; i < count; ++i) payloads.push_back(absl::StrCat(prefix, i));
  return payloads;
}

grpc::Status Publish(v1::Broker::Stub& stub, const std::string& topic,
                     const std::vector<std::string>& payloads, v1::PublishResponse* response,
                     const std::string& token) {
  v1::PublishRequest request;
  request.set_topic(topic);
  for (const std::string& payload : payloads) request.add_messages()->set_payload(payload);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  return stub.Publish(&context, request, response);
}

std::unique_ptr<ConsumeStream> OpenConsume(v1::Broker::Stub& stub, grpc::ClientContext& context,
                                           const std::string& topic, const std::string& group,
                                           uint32_t max_in_flight, uint32_t ack_deadline_ms) {
  context.set_deadline(Deadline());
  std::unique_ptr<ConsumeStream> stream = stub.Consume(&context);
  v1::ConsumeRequest request;
  request.mutable_subscription()->set_topic(topic);
  request.mutable_subscription()->set_group(group);
  request.mutable_subscription()->set_max_in_flight(max_in_flight);
  request.mutable_subscription()->set_ack_deadline_ms(ack_deadline_ms);
  // A refused write shows as the stream ending on the caller's first read.
  stream->Write(request);
  return stream;
}

std::vector<v1::Delivery> ReadDeliveries(ConsumeStream& stream, size_t count) {
  std::vector<v1::Delivery> deliveries;
  v1::ConsumeResponse response;
  while (deliveries.size() < count && stream.Read(&response)) {
    for (const v1::Delivery& delivery : response.deliveries()) deliveries.push_back(delivery);
  }
  return deliveries;
}

bool Ack(ConsumeStream& stream, const std::vector<v1::Delivery>& deliveries) {
  v1::ConsumeRequest request;
  for (const v1::Delivery& delivery : deliveries) request.add_ack_ids(delivery.ack_id());
  return stream.Write(request);
}

std::unique_ptr<SubscribeStream> OpenSubscribe(v1::Broker::Stub& stub, grpc::ClientContext& context,
                                               const std::string& topic) {
  context.set_deadline(Deadline());
  v1::SubscribeRequest request;
  request.set_topic(topic);
  std::unique_ptr<SubscribeStream> stream = stub.Subscribe(&context, request);
  stream->WaitForInitialMetadata();
  return stream;
}

HealthWatch::HealthWatch(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         absl::Duration timeout)
    : stub_(grpc::health::v1::Health::NewStub(channel)) {
  context_.set_deadline(Deadline(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  reader_ = stub_->Watch(&context_, request);
}

HealthWatch::~HealthWatch() {
  context_.TryCancel();
  grpc::health::v1::HealthCheckResponse ignored;
  while (reader_->Read(&ignored)) {
  }
  reader_->Finish();
}

bool HealthWatch::WaitFor(ServingStatus status) {
  grpc::health::v1::HealthCheckResponse response;
  while (current_ != status) {
    if (!reader_->Read(&response)) return false;
    current_ = response.status();
  }
  return true;
}

}  // namespace switchboard::testing

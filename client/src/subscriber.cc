#include "switchboard/client/subscriber.h"

#include <utility>

#include "server_stream_reader.h"

namespace switchboard::client {

class Subscriber::Impl
    : public internal::ServerStreamReader<v1::SubscribeRequest, v1::SubscribeResponse> {
 public:
  using ServerStreamReader::ServerStreamReader;
};

namespace {

v1::SubscribeRequest SubscribeRequestFor(std::string topic) {
  v1::SubscribeRequest request;
  request.set_topic(std::move(topic));
  return request;
}

}  // namespace

Subscriber::Subscriber(const Client& client, std::string topic, Handler handler)
    : impl_(std::make_unique<Impl>(client, SubscribeRequestFor(std::move(topic)),
                                   std::move(handler), "the subscription")) {
  // Only now, so that the handler may use this object from the first message on.
  impl_->Start([&client](grpc::ClientContext* context, const v1::SubscribeRequest* request,
                         grpc::ClientReadReactor<v1::SubscribeResponse>* reactor) {
    client.broker().async()->Subscribe(context, request, reactor);
  });
}

Subscriber::~Subscriber() {
  Stop();
  Wait().IgnoreError();
}

absl::Status Subscriber::WaitUntilLive(absl::Duration timeout) {
  return impl_->WaitUntilLive(timeout);
}

void Subscriber::Stop() { impl_->Stop(); }

absl::Status Subscriber::Wait() { return impl_->Wait(); }

}  // namespace switchboard::client

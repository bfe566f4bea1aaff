#include "switchboard/client/watcher.h"

#include <utility>

#include "server_stream_reader.h"

namespace switchboard::client {

// Switchboard sends the initial metadata once the provider accepted the
// subscription; a refusal is a trailers-only answer.
class Watcher::Impl
    : public internal::ServerStreamReader<v1::RpcSubscribeRequest, v1::RpcNotification> {
 public:
  using ServerStreamReader::ServerStreamReader;
};

Watcher::Watcher(const Client& client, v1::RpcSubscribeRequest request, Handler handler)
    : impl_(std::make_unique<Impl>(client, std::move(request), std::move(handler),
                                   "the provider subscription")) {
  // Only now, so that the handler may use this object from the first
  // notification on.
  impl_->Start([&client](grpc::ClientContext* context, const v1::RpcSubscribeRequest* request,
                         grpc::ClientReadReactor<v1::RpcNotification>* reactor) {
    client.rpc().async()->Subscribe(context, request, reactor);
  });
}

Watcher::~Watcher() {
  Stop();
  Wait().IgnoreError();
}

absl::Status Watcher::WaitUntilLive(absl::Duration timeout) {
  return impl_->WaitUntilLive(timeout);
}

void Watcher::Stop() { impl_->Stop(); }

absl::Status Watcher::Wait() { return impl_->Wait(); }

}  // namespace switchboard::client

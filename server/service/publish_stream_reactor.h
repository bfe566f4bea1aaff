// The reactor of one PublishStream: pipelined publishing where each request
// is answered by one response carrying its request_id, in completion order
// (PipelinedStream). Batches reach the broker in the order they were sent.
#pragma once

#include "server/service/pipelined_stream.h"

namespace switchboard::service {

class PublishStreamReactor final
    : public PipelinedStream<v1::PublishStreamRequest, v1::PublishStreamResponse> {
 public:
  PublishStreamReactor(ServiceContext& context, grpc::CallbackServerContext& call);

 private:
  void Handle(v1::PublishStreamRequest& request) override;
};

}  // namespace switchboard::service

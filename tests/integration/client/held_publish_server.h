// A fake Broker service on loopback whose PublishStream records every request
// and answers only when the test says so (or, after AnswerAll(), at once):
// what the Publisher's batching tests count requests against, with no clock
// involved. Message ids are "1", "2", ... in the order messages are answered.
// Every other Broker method is UNIMPLEMENTED.
#pragma once

#include <grpcpp/server.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.grpc.pb.h"

namespace switchboard::client {

class HeldPublishServer final : public v1::Broker::Service {
 public:
  // Listens on 127.0.0.1 at a port picked by the system.
  HeldPublishServer();
  ~HeldPublishServer() override;

  // "127.0.0.1:<port>".
  const std::string& target() const { return target_; }

  // Options for a Client of this server: the defaults, at target().
  ClientOptions client_options() const {
    ClientOptions options;
    options.target = target_;
    return options;
  }

  // True once `count` requests have arrived in all, false after 10 s.
  bool AwaitRequests(std::size_t count);

  // The payloads of every request that arrived, in arrival order.
  std::vector<std::vector<std::string>> Requests() const;

  // The dedup id of each time a message with `payload` arrived.
  std::vector<std::string> DedupIdsOf(const std::string& payload) const;

  // The messages of each request that arrived, in arrival order.
  std::vector<std::size_t> RequestSizes() const;

  // PublishStream RPCs opened so far.
  int streams_opened() const;

  // Answers the oldest held request with its ids, or with `error`.
  void AnswerOldest(const absl::Status& error = absl::OkStatus());

  // Answers every held request, and from now on each request as it arrives.
  void AnswerAll();

  // Cancels every open stream: the client sees it end (CANCELLED) with its
  // held requests unanswered.
  void EndStreams();

  grpc::Status PublishStream(grpc::ServerContext* context,
                             grpc::ServerReaderWriter<v1::PublishStreamResponse,
                                                      v1::PublishStreamRequest>* stream) override;

 private:
  using Stream = grpc::ServerReaderWriter<v1::PublishStreamResponse, v1::PublishStreamRequest>;

  struct HeldRequest {
    Stream* stream;
    uint64_t request_id;
    std::size_t messages;
  };

  void AnswerOldestLocked(const absl::Status& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HoldsRequestOf(const Stream* stream) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::vector<std::string>> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> dedup_ids_ ABSL_GUARDED_BY(mu_);
  std::deque<HeldRequest> held_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ServerContext*> open_ ABSL_GUARDED_BY(mu_);
  int streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool answer_at_once_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  std::string target_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace switchboard::client

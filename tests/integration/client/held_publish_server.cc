#include "tests/integration/client/held_publish_server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace switchboard::client {

HeldPublishServer::HeldPublishServer() {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  target_ = absl::StrCat("127.0.0.1:", port);
}

HeldPublishServer::~HeldPublishServer() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
}

bool HeldPublishServer::AwaitRequests(std::size_t count) {
  absl::MutexLock lock(&mu_);
  const auto arrived = [this, count] {
    mu_.AssertReaderHeld();
    return requests_.size() >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(10));
}

std::vector<std::vector<std::string>> HeldPublishServer::Requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

std::vector<std::string> HeldPublishServer::DedupIdsOf(const std::string& payload) const {
  absl::MutexLock lock(&mu_);
  auto found = dedup_ids_.find(payload);
  return found == dedup_ids_.end() ? std::vector<std::string>() : found->second;
}

std::vector<std::size_t> HeldPublishServer::RequestSizes() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::size_t> sizes;
  for (const std::vector<std::string>& payloads : requests_) sizes.push_back(payloads.size());
  return sizes;
}

int HeldPublishServer::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return streams_opened_;
}

void HeldPublishServer::AnswerOldest(const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  AnswerOldestLocked(error);
}

void HeldPublishServer::AnswerAll() {
  absl::MutexLock lock(&mu_);
  answer_at_once_ = true;
  while (!held_.empty()) AnswerOldestLocked(absl::OkStatus());
}

void HeldPublishServer::EndStreams() {
  absl::MutexLock lock(&mu_);
  for (grpc::ServerContext* context : open_) context->TryCancel();
  held_.clear();  // All theirs: AnswerOldest() goes on with later streams.
}

grpc::Status HeldPublishServer::PublishStream(grpc::ServerContext* context, Stream* stream) {
  {
    absl::MutexLock lock(&mu_);
    ++streams_opened_;
    open_.push_back(context);
  }
  v1::PublishStreamRequest request;
  while (stream->Read(&request)) {
    absl::MutexLock lock(&mu_);
    std::vector<std::string>& payloads = requests_.emplace_back();
    for (const v1::OutgoingMessage& message : request.messages()) {
      payloads.push_back(message.payload());
      dedup_ids_[message.payload()].push_back(message.dedup_id());
    }
    held_.push_back(HeldRequest{stream, request.request_id(), payloads.size()});
    if (answer_at_once_) AnswerOldestLocked(absl::OkStatus());
  }
  absl::MutexLock lock(&mu_);
  // Half-closed by the client: like a real server, answer what was read
  // before ending. Cancelled: what is held is never answered.
  const auto finished = [this, context, stream] {
    mu_.AssertReaderHeld();
    return shutting_down_ || context->IsCancelled() || !HoldsRequestOf(stream);
  };
  mu_.Await(absl::Condition(&finished));
  held_.erase(std::remove_if(held_.begin(), held_.end(),
                             [stream](const HeldRequest& held) { return held.stream == stream; }),
              held_.end());
  open_.erase(std::find(open_.begin(), open_.end(), context));
  return grpc::Status::OK;
}

void HeldPublishServer::AnswerOldestLocked(const absl::Status& error) {
  if (held_.empty()) return;
  const HeldRequest held = held_.front();
  held_.pop_front();
  v1::PublishStreamResponse response;
  response.set_request_id(held.request_id);
  if (error.ok()) {
    for (std::size_t i = 0; i < held.messages; ++i) {
      response.add_message_ids(absl::StrCat(next_id_++));
    }
  } else {
    response.mutable_error()->set_code(static_cast<int32_t>(error.code()));
    response.mutable_error()->set_message(std::string(error.message()));
  }
  held.stream->Write(response);
}

bool HeldPublishServer::HoldsRequestOf(const Stream* stream) const {
  return std::any_of(held_.begin(), held_.end(),
                     [stream](const HeldRequest& held) { return held.stream == stream; });
}

}  // namespace switchboard::client

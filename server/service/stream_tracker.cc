#include "server/service/stream_tracker.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace switchboard::service {

absl::Status StreamTracker::Register(DrainableStream* stream, const std::string& client_id) {
  absl::MutexLock lock(&mu_);
  if (draining_) return absl::UnavailableError("server is shutting down; reconnect elsewhere");
  if (streams_.size() >= max_streams_) {
    return absl::ResourceExhaustedError(absl::StrCat("limits.max_streams: the server has ",
                                                     streams_.size(), " open streams, its limit"));
  }
  uint32_t& count = per_client_[client_id];
  if (count >= max_streams_per_client_) {
    return absl::ResourceExhaustedError(absl::StrCat("limits.max_streams_per_client: client '",
                                                     client_id, "' already has ", count,
                                                     " open streams, the limit"));
  }
  ++count;
  streams_.insert(stream);
  return absl::OkStatus();
}

void StreamTracker::Unregister(DrainableStream* stream, const std::string& client_id) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
  auto it = per_client_.find(client_id);
  if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
}

void StreamTracker::DrainAll() {
  // Drain() may run the stream's OnDone on another thread at any time after
  // it is called, so each call happens under the lock: Unregister() waits
  // for it, and no stream is drained after it is gone.
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (DrainableStream* stream : streams_) stream->Drain();
}

bool StreamTracker::WaitUntilEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
}

}  // namespace switchboard::service

// Tracks every open gRPC stream so the server can bound them and drain them.
//
// Each streaming reactor registers itself when it starts and unregisters in
// OnDone. The tracker enforces `limits.max_streams_per_client` and
// `limits.max_streams` (the process' total) and, at
// shutdown, asks every stream to end (DESIGN.md §3 close order: consume
// streams release their leases, subscribers get UNAVAILABLE so clients
// reconnect elsewhere). Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace switchboard::service {

// A stream the tracker can ask to end.
class DrainableStream {
 public:
  virtual ~DrainableStream() = default;

  // Ends the stream soon with UNAVAILABLE. Called at most once, from the
  // draining thread, while the stream is registered. Must not block.
  virtual void Drain() = 0;
};

class StreamTracker {
 public:
  StreamTracker(uint32_t max_streams_per_client, uint32_t max_streams)
      : max_streams_per_client_(max_streams_per_client), max_streams_(max_streams) {}

  // Registers `stream` for `client_id`. Fails with RESOURCE_EXHAUSTED when
  // the client or the process is at its limit, and UNAVAILABLE once
  // draining began.
  absl::Status Register(DrainableStream* stream, const std::string& client_id);

  // Unregisters a stream registered with Register().
  void Unregister(DrainableStream* stream, const std::string& client_id);

  // Refuses new streams and asks every open one to end.
  void DrainAll();

  // Waits until no stream is registered, or `deadline`. True when empty.
  bool WaitUntilEmpty(absl::Time deadline);

 private:
  const uint32_t max_streams_per_client_;
  const uint32_t max_streams_;
  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<DrainableStream*> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> per_client_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::service

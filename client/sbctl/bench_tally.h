// The tallies and the progress clock that every `sbctl bench` mode shares
// (bench.cc, bench_publisher.cc): counts, latencies and errors of one run,
// printed once a second on stderr and summed up as the JSON line of bench.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace switchboard::sbctl {

// Thread-safe tallies of one run, fed from gRPC callback threads (and from
// the publishing threads of `bench publisher`). What arrives after Stop()
// (answers drained, deliveries during the close) is outside the measured
// interval and not counted.
class Tally {
 public:
  // `target` > 0: finished() is notified once that many messages are counted.
  // `unit` names what is counted, in the progress lines and the JSON (`msgs`,
  // `msgs_per_sec`).
  explicit Tally(int64_t target, absl::string_view unit = "msgs") : target_(target), unit_(unit) {}

  void AddMessages(int64_t count) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    messages_ += count;
    if (target_ > 0 && messages_ >= target_ && !finished_.HasBeenNotified()) finished_.Notify();
  }

  void AddLatency(absl::Duration latency) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    latencies_us_.push_back(absl::ToInt64Microseconds(latency));
  }

  // Counts `status` by code; the first error of each code is also printed on
  // stderr, so a run that fails says why.
  void AddError(const absl::Status& status) {
    AddError(absl::StatusCodeToString(status.code()), status.ToString());
  }

  // Counts an error of kind `name` (a status code name, or JSON_RPC_ERROR);
  // `description` is printed for the first error of each kind.
  void AddError(absl::string_view name, absl::string_view description) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    if (++errors_[std::string(name)] == 1) std::cerr << "error: " << description << "\n";
  }

  // Ends the measured interval.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

  int64_t messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }

  absl::Notification& finished() { return finished_; }

  const std::string& unit() const { return unit_; }

  // The JSON summary: `fields` (already formatted, e.g. `"mode":"publish"`)
  // followed by the figures.
  std::string Json(const std::string& fields, absl::Duration elapsed) {
    absl::MutexLock lock(&mu_);
    std::sort(latencies_us_.begin(), latencies_us_.end());
    const auto percentile = [this](double fraction) -> int64_t {
      if (latencies_us_.empty()) return 0;
      const auto index = static_cast<std::size_t>(fraction * latencies_us_.size());
      return latencies_us_[std::min(index, latencies_us_.size() - 1)];
    };
    std::string errors;
    for (const auto& [name, count] : errors_) {
      absl::StrAppend(&errors, errors.empty() ? "" : ",", "\"", name, "\":", count);
    }
    return absl::StrFormat(
        "{%s,\"elapsed_s\":%.3f,\"%s\":%d,\"%s_per_sec\":%.1f,\"samples\":%d,"
        "\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"errors\":{%s}}",
        fields, absl::ToDoubleSeconds(elapsed), unit_, messages_, unit_,
        messages_ / std::max(absl::ToDoubleSeconds(elapsed), 1e-9), latencies_us_.size(),
        percentile(0.50), percentile(0.99), latencies_us_.empty() ? 0 : latencies_us_.back(),
        errors);
  }

 private:
  const int64_t target_;
  const std::string unit_;
  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int64_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> latencies_us_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  absl::Notification finished_;
};

// Prints progress on stderr once a second until `duration` has passed or
// the tally is finished.
void RunClock(Tally& tally, absl::Time start, absl::Duration duration);

}  // namespace switchboard::sbctl

#include "bench_tally.h"

namespace switchboard::sbctl {

void RunClock(Tally& tally, absl::Time start, absl::Duration duration) {
  const absl::Time end = start + duration;
  int64_t previous = 0;
  for (absl::Time tick = start + absl::Seconds(1);; tick += absl::Seconds(1)) {
    if (tally.finished().WaitForNotificationWithDeadline(std::min(tick, end))) return;
    const int64_t messages = tally.messages();
    std::cerr << absl::StrFormat("[%5.1fs] %d %s, %d %s/s\n",
                                 absl::ToDoubleSeconds(absl::Now() - start), messages, tally.unit(),
                                 messages - previous, tally.unit());
    previous = messages;
    if (tick >= end) return;
  }
}

}  // namespace switchboard::sbctl

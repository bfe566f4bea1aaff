// UpstreamClient::Cancel and the cancel contract of call_layer.h, seen from
// the client's callers: CANCELLED for a call still waiting, delivered after
// Cancel() returns; a call already sent runs to its end.
#include <cstddef>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;

TEST_F(UpstreamClientTest, ACancelledCallIsAnsweredAfterCancelReturnsAndASentOneRunsToItsEnd) {
  UpstreamOptions options;
  options.admission.rate = 1;
  options.admission.burst = 1;
  options.coalescing = false;
  Create(options);
  const size_t sent = Start("getSlot");
  const size_t waiting = Start("getSlot");
  ASSERT_EQ(SentCount(), 1u);
  Run([&] {
    client_->Cancel(waiting + 1);
    EXPECT_THAT(answers_[waiting], StatusIs(absl::StatusCode::kUnknown)) << "not inline";
    client_->Cancel(sent + 1);
    client_->Cancel(waiting + 1);  // Twice: nothing more.
  });
  EXPECT_THAT(AnswerOf(waiting), StatusIs(absl::StatusCode::kCancelled));
  Respond(0, Result("1"));
  EXPECT_THAT(AnswerOf(sent), IsOk());
}

}  // namespace
}  // namespace switchboard::upstream

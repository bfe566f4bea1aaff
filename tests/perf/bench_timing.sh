#!/usr/bin/env bash
# The wall-clock bounds of the acceptance tests, as a benchmark.
#
# DESIGN.md §8: no timed assertions in tests. The tests below assert exact
# counts under ctest, and report what depends on the clock (how soon a call
# was refused, the rate nginx got, a client's share in a time window, how
# long a drain took) as figures: gtest XML properties, from ReportFigure()
# (tests/integration/rpc/rpc_harness.h) or RecordProperty(). This script
# runs each of those tests alone from integration_tests, RUNS times (default
# 1), and prints the median of each figure next to its bound, as a Markdown
# table, then the load average before and after (a loaded machine misses
# bounds an idle one keeps). Exits 1 when a figure misses its bound, or a
# test failed or did not report it.
#
# Not part of the default test run: the load tests alone take about a
# minute per run. On a shared machine run it as
# `nice -n -10 tests/perf/bench_timing.sh` (as root).
#
#   tests/perf/bench_timing.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-1}
binary=$build/tests/integration/integration_tests
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ! -x $binary ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" integration_tests >/dev/null
fi

# One bound a line: test (suite.name), figure, comparison (<, <=, >=, or
# "in" a closed range lo..hi), bound, and where the bound comes from.
bounds=$(
  cat <<'EOF'
RpcDeadlineTest.CallThatCannotBeAdmittedBeforeItsDeadlineIsRefusedAtOnceWithRetryAfter|refusal_median_us|<=|5000|issue 4: refused within 5 ms
RpcDeadlineTest.CallThatCannotBeAdmittedBeforeItsDeadlineIsRefusedAtOnceWithRetryAfter|refusal_max_us|<=|50000|every refusal far sooner than the 250 ms deadline
RpcCallApiTest.ProviderThatDoesNotAnswerInTimeIsDeadlineExceeded|deadline_exceeded_after_ms|<|5000|the upstream's 300 ms timeout, before the caller's 5 s deadline
RpcCallApiTest.CancellingACallStreamWithdrawsItsCallsWaitingForAdmission|queue_emptied_after_cancel_ms|<|900|withdrawn at once, not admitted one a second
RpcRateLimitTest.OneClientGetsTheProvidersRateWithoutA429OverAtMostMaxConnections|nginx_requests_per_second|>=|95|issue 4: 95% of the provider's 100/s
RpcFairnessTest.TwoClientsOfEqualWeightGetHalfTheUpstreamEach|even-a_share|in|0.45..0.55|issue 4: 50/50 within 5 points
RpcFairnessTest.ClientsWeightedTwoToOneGetTwoThirdsAndOneThird|double_share|in|0.6167..0.7167|issue 4: 67/33 within 5 points
RpcFairnessWithBatchingTest.TwoClientsOfEqualWeightGetHalfTheUpstreamEach|even-a_share|in|0.45..0.55|issue 12: the same with auto-batching
RpcFairnessWithBatchingTest.ClientsWeightedTwoToOneGetTwoThirdsAndOneThird|double_share|in|0.6167..0.7167|issue 12: the same with auto-batching
RpcRateLimitTest.WithAutoBatchingTheProviderGetsAtMostTheRateInCalls|provider_calls_per_second|in|95..100|issue 12: the provider's 100/s counted in calls, 95% of it used
RpcRateLimitTest.WithAutoBatchingTheProviderGetsAtMostTheRateInCalls|provider_peak_call_excess|<=|5|nginx limit_req's burst of 5, counted in calls
RpcPushbackTest.ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers|nginx_requests_in_retry_after_pause|<=|0|nothing but requests in flight (answered within 100 ms) until Retry-After passed
RpcPushbackTest.ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers|nginx_requests_during_pushback|<=|10|a handful where calls at the limit would be 150
RpcPushbackTest.ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers|last_429_after_pushback_end_ms|<|100|no 429 once nginx stopped, but for requests in flight
RpcPushbackTest.ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers|nginx_requests_per_second_after_recovery|>=|95|issue 4: 95% of the limit (100/s) once recovered
EndToEndTest.KillingRedisDuringPublishFailsFastAndLosesNoAcknowledgedPublish|slowest_failed_publish_ms|<|1000|seed 003: fail fast, no offline queue
EndToEndTest.KillingRedisDuringPublishFailsFastAndLosesNoAcknowledgedPublish|first_failure_after_kill_ms|<|1000|seed 003: fail fast, no offline queue
EndToEndTest.SigtermDrainsConsumersToTheOtherReplicaAndExitsZeroLosingNothing|drain_ms|<|5500|drain_timeout_ms 5000, plus the exit and the test's wait
EndToEndTest.AHungRedisIsNotServingUntilItAnswersAgain|not_serving_after_ms|<=|2000|issue 15: command timeout (1 s) + 1 s
EndToEndTest.AHungRedisIsNotServingUntilItAnswersAgain|refused_publish_after_ms|<|1000|issue 15: fail fast, before the command timeout
EOF
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tests=$(cut -d'|' -f1 <<<"$bounds" | awk '!seen[$0]++')
for run in $(seq "$runs"); do
  for test in $tests; do
    # Figures of a failed run still count; the table marks the test.
    "$binary" --gtest_filter="$test" --gtest_output="xml:$work/$run-$test.xml" \
      >"$work/$run-$test.log" 2>&1 || echo "$test failed in run $run (its log follows the table)" >&2
  done
done

status=0
BOUNDS=$bounds RUNS=$runs WORK=$work python3 - <<'EOF' || status=$?
import glob, os, statistics, sys
import xml.etree.ElementTree as ET

work, runs = os.environ["WORK"], int(os.environ["RUNS"])
figures = {}  # (test, figure) -> [values]
failed = set()
for path in sorted(glob.glob(os.path.join(work, "*.xml"))):
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.get("result") not in (None, "completed"):
            failed.add(test)
        # gtest records properties as <property> children, or (older
        # releases) as attributes of the test case.
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        properties.update(case.attrib)
        for name, value in properties.items():
            try:
                figures.setdefault((test, name), []).append(float(value))
            except (TypeError, ValueError):
                pass

def within(value, op, bound):
    if op == "in":
        low, high = (float(x) for x in bound.split(".."))
        return low <= value <= high
    bound = float(bound)
    return {"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op]

missed = 0
print(f"| Test | Figure | Measured (median of {runs}) | Bound | | Why |")
print("|---|---|---|---|---|---|")
for line in os.environ["BOUNDS"].splitlines():
    test, figure, op, bound, why = line.split("|")
    values = figures.get((test, figure), [])
    shown_bound = bound.replace("..", " to ") if op == "in" else f"{op} {bound}"
    suite = test.split(".")[0]
    if not values:
        verdict, measured = "NO FIGURE", "-"
    else:
        value = statistics.median(values)
        measured = f"{value:g}"
        verdict = "ok" if within(value, op, bound) else "MISSED"
    if test in failed:
        verdict += " (test failed)"
    if verdict != "ok":
        missed += 1
    print(f"| {suite} | `{figure}` | {measured} | {shown_bound} | {verdict} | {why} |")
sys.exit(1 if missed else 0)
EOF
echo
echo "Load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((status != 0)); then
  for log in "$work"/*.log; do
    grep -q '\[  FAILED  \]' "$log" && { echo "--- $log"; tail -n 40 "$log"; }
  done
fi
exit "$status"

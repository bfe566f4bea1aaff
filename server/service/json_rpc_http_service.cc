#include "server/service/json_rpc_http_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/common/names.h"
#include "server/service/json_rpc_calls.h"
#include "server/upstream/json_rpc.h"
#include "server/ws/websocket_handshake.h"

namespace switchboard::service {
namespace {

// The `method` label of the front door's refusals in
// switchboard_requests_rejected_total.
constexpr absl::string_view kMetricMethod = "JsonRpcHttp";

http::HttpResponse Json(int status, std::string body) {
  http::HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = std::move(body);
  return response;
}

// An answer for the whole request that no call reached: HTTP `status`,
// a JSON-RPC error with id null.
http::HttpResponse Refused(int status, int code, absl::string_view message) {
  return Json(status, ResponseObject("null", "error", ErrorObject(code, message)));
}

// The calls of one request, answered as they complete; the last answer
// sends the response.
class PendingRequest {
 public:
  PendingRequest(http::Responder responder, bool batch, size_t calls)
      : responder_(std::move(responder)), batch_(batch), answers_(calls), remaining_(calls) {}

  // Records item `index`'s response object (empty for a notification).
  // `limited_for` is set when a limit refused the call.
  void Answer(size_t index, std::string response,
              std::optional<absl::Duration> limited_for = std::nullopt) {
    {
      absl::MutexLock lock(&mu_);
      answers_[index] = std::move(response);
      if (limited_for.has_value()) {
        ++limited_;
        retry_after_ = std::max(retry_after_, *limited_for);
      }
      if (--remaining_ > 0) return;
    }
    Send();
  }

 private:
  void Send() {
    std::vector<absl::string_view> objects;
    for (const std::string& answer : answers_) {
      if (!answer.empty()) objects.push_back(answer);
    }
    http::HttpResponse response = Json(200, "");
    if (limited_ == answers_.size()) {
      response.status = 429;
      const int64_t seconds =
          std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(retry_after_, absl::Seconds(1))));
      response.headers.emplace_back("Retry-After", absl::StrCat(seconds));
    }
    if (objects.empty()) {
      response.status = 204;  // Notifications only.
    } else if (batch_) {
      response.body = upstream::BuildBatch(objects);
    } else {
      response.body = std::string(objects.front());
    }
    responder_.Send(std::move(response));
  }

  http::Responder responder_;
  const bool batch_;
  absl::Mutex mu_;
  std::vector<std::string> answers_;  // Complete once remaining_ is 0.
  size_t remaining_ ABSL_GUARDED_BY(mu_);
  size_t limited_ = 0;  // Written under mu_, read once complete.
  absl::Duration retry_after_ = absl::ZeroDuration();
};

}  // namespace

void JsonRpcHttpService::Handle(http::HttpRequest request, http::Responder responder) {
  // Every refusal is counted as the gRPC side's are, by method and code.
  const auto count = [this](absl::string_view code) {
    context_.metrics.CountRejected(kMetricMethod, code);
  };
  const std::string* upgrade = request.Header("upgrade");
  const bool websocket = websockets_ != nullptr && request.method == "GET" && upgrade != nullptr &&
                         absl::EqualsIgnoreCase(*upgrade, "websocket");
  if (request.method != "POST" && !websocket) {
    count("UNIMPLEMENTED");
    http::HttpResponse response =
        Refused(405, kInvalidRequest,
                websockets_ != nullptr ? "POST, or GET with Upgrade: websocket" : "only POST");
    response.headers.emplace_back("Allow", websockets_ != nullptr ? "GET, POST" : "POST");
    responder.Send(std::move(response));
    return;
  }
  // "/<upstream>" or "/<upstream>/<token>".
  std::vector<absl::string_view> segments =
      absl::StrSplit(absl::string_view(request.path).substr(1), '/');
  if (segments.size() > 2 || !common::ValidateUpstreamName(segments[0], "path").ok()) {
    count("NOT_FOUND");
    responder.Send(Refused(404, kInvalidRequest, "/<upstream> or /<upstream>/<token>"));
    return;
  }
  const std::string upstream(segments[0]);
  const std::string* header = request.Header("authorization");
  const std::string authorization = header != nullptr      ? *header
                                    : segments.size() == 2 ? absl::StrCat("Bearer ", segments[1])
                                                           : std::string();
  absl::StatusOr<auth::ClientIdentity> client = context_.clients.Authenticate(authorization);
  if (!client.ok()) {
    count("UNAUTHENTICATED");
    responder.Send(Refused(401, kInvalidRequest, client.status().message()));
    return;
  }
  if (!context_.upstreams.Contains(upstream)) {
    count("NOT_FOUND");
    responder.Send(Refused(404, kInvalidRequest,
                           absl::StrCat("no upstream named \"", upstream, "\" is configured")));
    return;
  }
  if (websocket) {
    Upgrade(request, std::move(responder), upstream, *std::move(client));
    return;
  }
  const absl::string_view body = absl::StripAsciiWhitespace(request.body);
  if (absl::Status json = upstream::ValidateJson(body); !json.ok()) {
    count("INVALID_ARGUMENT");
    responder.Send(Refused(200, kParseError, json.message()));
    return;
  }
  const bool batch = body.front() == '[';
  std::vector<absl::string_view> items;
  if (batch) {
    absl::StatusOr<std::vector<absl::string_view>> split = upstream::SplitBatchItems(body);
    if (!split.ok()) {
      count("INVALID_ARGUMENT");
      responder.Send(Refused(200, kInvalidRequest, split.status().message()));
      return;
    }
    items = *std::move(split);
  } else {
    items.push_back(body);
  }
  if (items.size() > max_batch_calls_) {
    count("INVALID_ARGUMENT");
    responder.Send(Refused(
        200, kInvalidRequest,
        absl::StrCat("a batch may have at most ", max_batch_calls_, " calls, got ", items.size())));
    return;
  }
  auto pending = std::make_shared<PendingRequest>(std::move(responder), batch, items.size());
  const absl::Time deadline = absl::Now() + context_.upstreams.request_timeout(upstream);
  for (size_t i = 0; i < items.size(); ++i) {
    StartJsonRpcCall(context_, kMetricMethod, upstream, items[i], *client, deadline,
                     [pending, i](std::string response, std::optional<absl::Duration> limited_for) {
                       pending->Answer(i, std::move(response), limited_for);
                     });
  }
}

void JsonRpcHttpService::Upgrade(const http::HttpRequest& request, http::Responder responder,
                                 std::string upstream, auth::ClientIdentity client) {
  const std::string* version = request.Header("sec-websocket-version");
  if (version == nullptr || *version != "13") {
    context_.metrics.CountRejected(kMetricMethod, "INVALID_ARGUMENT");
    http::HttpResponse response =
        Refused(426, kInvalidRequest, "WebSocket version 13 (Sec-WebSocket-Version) only");
    response.headers.emplace_back("Sec-WebSocket-Version", "13");
    responder.Send(std::move(response));
    return;
  }
  const std::string* key = request.Header("sec-websocket-key");
  if (key == nullptr || key->empty()) {
    context_.metrics.CountRejected(kMetricMethod, "INVALID_ARGUMENT");
    responder.Send(Refused(400, kInvalidRequest, "a WebSocket upgrade needs Sec-WebSocket-Key"));
    return;
  }
  if (!websockets_->Admit()) {
    context_.metrics.CountRejected(kMetricMethod, "RESOURCE_EXHAUSTED");
    responder.Send(Refused(503, kLimited,
                           "every WebSocket connection is taken "
                           "(server.json_rpc_http.max_websockets)"));
    return;
  }
  http::HttpResponse response;
  response.status = 101;
  response.headers = {{"Upgrade", "websocket"},
                      {"Connection", "Upgrade"},
                      {"Sec-WebSocket-Accept", ws::AcceptFor(*key)}};
  responder.Upgrade(std::move(response), [websockets = websockets_, upstream = std::move(upstream),
                                          client = std::move(client)](bufferevent* bev) mutable {
    websockets->Accept(bev, std::move(upstream), std::move(client));
  });
}

}  // namespace switchboard::service

#include "server/upstream/json_rpc.h"

#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/status_macros.h"

namespace switchboard::upstream {
namespace {

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

// A strict single-pass JSON reader over one text. Values are skipped and
// returned as spans; only strings are decoded, and only when asked.
class Scanner {
 public:
  using MemberVisitor = absl::FunctionRef<absl::Status(std::string name, absl::string_view value)>;

  explicit Scanner(absl::string_view text) : text_(text) {}

  // The whole text is one value (with whitespace around it).
  absl::StatusOr<absl::string_view> WholeValue() {
    SkipSpace();
    SB_ASSIGN_OR_RETURN(absl::string_view value, Value(0));
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the value");
    return value;
  }

  // The whole text is one object; `visit` sees each member in order.
  absl::Status WholeObject(MemberVisitor visit) {
    SkipSpace();
    if (Peek() != '{') return Error("expected an object");
    SB_RETURN_IF_ERROR(Object(0, visit));
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the value");
    return absl::OkStatus();
  }

  // The whole text is one array; `visit` sees each element's span in order.
  absl::Status WholeArray(absl::FunctionRef<absl::Status(absl::string_view element)> visit) {
    SkipSpace();
    if (!Consume('[')) return Error("expected an array");
    SkipSpace();
    if (Peek() == ']') return Error("the array is empty");
    while (true) {
      SkipSpace();
      SB_ASSIGN_OR_RETURN(absl::string_view element, Value(1));
      SB_RETURN_IF_ERROR(visit(element));
      SkipSpace();
      if (Consume(']')) break;
      if (!Consume(',')) return Error("expected ',' or ']'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the value");
    return absl::OkStatus();
  }

  // Decodes the string at the current position.
  absl::StatusOr<std::string> String() {
    if (!Consume('"')) return Error("expected a string");
    std::string decoded;
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return decoded;
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        decoded.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char escape = text_[pos_++];
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          decoded.push_back(escape);
          break;
        case 'b':
          decoded.push_back('\b');
          break;
        case 'f':
          decoded.push_back('\f');
          break;
        case 'n':
          decoded.push_back('\n');
          break;
        case 'r':
          decoded.push_back('\r');
          break;
        case 't':
          decoded.push_back('\t');
          break;
        case 'u': {
          SB_ASSIGN_OR_RETURN(uint32_t code_point, CodePoint());
          AppendUtf8(code_point, &decoded);
          break;
        }
        default:
          --pos_;
          return Error("invalid escape in a string");
      }
    }
  }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  bool Consume(char c) {
    if (Peek() != c || pos_ >= text_.size()) return false;
    ++pos_;
    return true;
  }

  bool ConsumeWord(absl::string_view word) {
    if (!absl::StartsWith(text_.substr(pos_), word)) return false;
    pos_ += word.size();
    return true;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && IsJsonSpace(text_[pos_])) ++pos_;
  }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON at byte ", pos_, ": ", what));
  }

  absl::StatusOr<absl::string_view> Value(int depth) {
    const size_t start = pos_;
    switch (Peek()) {
      case '{':
        SB_RETURN_IF_ERROR(
            Object(depth, [](std::string, absl::string_view) { return absl::OkStatus(); }));
        break;
      case '[':
        SB_RETURN_IF_ERROR(Array(depth));
        break;
      case '"':
        SB_RETURN_IF_ERROR(String().status());
        break;
      case 't':
        if (!ConsumeWord("true")) return Error("expected a value");
        break;
      case 'f':
        if (!ConsumeWord("false")) return Error("expected a value");
        break;
      case 'n':
        if (!ConsumeWord("null")) return Error("expected a value");
        break;
      default:
        SB_RETURN_IF_ERROR(Number());
        break;
    }
    return text_.substr(start, pos_ - start);
  }

  absl::Status Object(int depth, MemberVisitor visit) {
    if (depth >= kMaxJsonDepth) return Error("nested too deeply");
    Consume('{');
    SkipSpace();
    if (Consume('}')) return absl::OkStatus();
    while (true) {
      SkipSpace();
      SB_ASSIGN_OR_RETURN(std::string name, String());
      SkipSpace();
      if (!Consume(':')) return Error("expected ':'");
      SkipSpace();
      SB_ASSIGN_OR_RETURN(absl::string_view value, Value(depth + 1));
      SB_RETURN_IF_ERROR(visit(std::move(name), value));
      SkipSpace();
      if (Consume('}')) return absl::OkStatus();
      if (!Consume(',')) return Error("expected ',' or '}'");
    }
  }

  absl::Status Array(int depth) {
    if (depth >= kMaxJsonDepth) return Error("nested too deeply");
    Consume('[');
    SkipSpace();
    if (Consume(']')) return absl::OkStatus();
    while (true) {
      SkipSpace();
      SB_RETURN_IF_ERROR(Value(depth + 1).status());
      SkipSpace();
      if (Consume(']')) return absl::OkStatus();
      if (!Consume(',')) return Error("expected ',' or ']'");
    }
  }

  absl::Status Number() {
    Consume('-');
    if (Consume('0')) {
      // No leading zeros.
    } else if (IsDigit(Peek()) && Peek() != '0') {
      while (IsDigit(Peek())) ++pos_;
    } else {
      return Error("expected a value");
    }
    if (Consume('.')) {
      if (!IsDigit(Peek())) return Error("expected a digit after '.'");
      while (IsDigit(Peek())) ++pos_;
    }
    if (Consume('e') || Consume('E')) {
      if (!Consume('+')) Consume('-');
      if (!IsDigit(Peek())) return Error("expected a digit in the exponent");
      while (IsDigit(Peek())) ++pos_;
    }
    return absl::OkStatus();
  }

  // The four hex digits after "\u", joined with a following low surrogate.
  absl::StatusOr<uint32_t> CodePoint() {
    SB_ASSIGN_OR_RETURN(uint32_t high, HexQuad());
    if (high < 0xD800 || high > 0xDBFF) {
      if (high >= 0xDC00 && high <= 0xDFFF) return Error("lone low surrogate");
      return high;
    }
    if (!ConsumeWord("\\u")) return Error("high surrogate without its low half");
    SB_ASSIGN_OR_RETURN(uint32_t low, HexQuad());
    if (low < 0xDC00 || low > 0xDFFF) return Error("high surrogate without its low half");
    return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
  }

  absl::StatusOr<uint32_t> HexQuad() {
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = HexValue(Peek());
      if (digit < 0) return Error("expected four hex digits after \\u");
      value = value * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return value;
  }

  const absl::string_view text_;
  size_t pos_ = 0;
};

// The `method` member of one request object.
absl::StatusOr<std::string> RequestMethod(absl::string_view request) {
  std::optional<std::string> method;
  SB_RETURN_IF_ERROR(
      Scanner(request).WholeObject([&](std::string name, absl::string_view value) -> absl::Status {
        if (name != "method") return absl::OkStatus();
        SB_ASSIGN_OR_RETURN(method, Scanner(value).String());
        return absl::OkStatus();
      }));
  if (!method.has_value()) return absl::InvalidArgumentError("a request has no string method");
  return *std::move(method);
}

}  // namespace

absl::Status ValidateJson(absl::string_view text) { return Scanner(text).WholeValue().status(); }

std::string BuildRequest(uint64_t id, absl::string_view method, absl::string_view params_json) {
  // Method names are [A-Za-z0-9._:-]: nothing to escape.
  std::string body = absl::StrCat(R"({"jsonrpc":"2.0","id":)", id, R"(,"method":")", method, "\"");
  if (!params_json.empty()) absl::StrAppend(&body, ",\"params\":", params_json);
  body.push_back('}');
  return body;
}

absl::StatusOr<ResponseParts> SplitResponse(absl::string_view body) {
  ResponseParts parts;
  SB_RETURN_IF_ERROR(
      Scanner(body).WholeObject([&](std::string name, absl::string_view value) -> absl::Status {
        if (name == "result") parts.result = value;
        if (name == "error") parts.error = value;
        if (name == "id") parts.id = value;
        return absl::OkStatus();
      }));
  if (!parts.result.has_value() && !parts.error.has_value()) {
    return absl::InvalidArgumentError("the response has neither a result nor an error");
  }
  return parts;
}

absl::StatusOr<RequestParts> SplitRequest(absl::string_view body) {
  RequestParts parts;
  bool has_method = false;
  SB_RETURN_IF_ERROR(
      Scanner(body).WholeObject([&](std::string name, absl::string_view value) -> absl::Status {
        if (name == "id") parts.id = value;
        if (name == "params") parts.params = value;
        if (name == "method") {
          absl::StatusOr<std::string> method = Scanner(value).String();
          if (!method.ok()) return absl::InvalidArgumentError("method: must be a string");
          parts.method = *std::move(method);
          has_method = true;
        }
        if (name == "jsonrpc" && value != R"("2.0")") {
          return absl::InvalidArgumentError("jsonrpc: must be \"2.0\"");
        }
        return absl::OkStatus();
      }));
  if (!has_method) return absl::InvalidArgumentError("method: is required");
  return parts;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string SharingKey(absl::string_view method, absl::string_view params_json) {
  // Method names never contain '\0'.
  return absl::StrCat(method, absl::string_view("\0", 1), params_json);
}

absl::StatusOr<NotificationParts> SplitNotification(absl::string_view body) {
  SB_ASSIGN_OR_RETURN(RequestParts request, SplitRequest(body));
  if (request.id.has_value()) return absl::InvalidArgumentError("a notification has no id");
  if (!request.params.has_value()) return absl::InvalidArgumentError("params: is required");
  NotificationParts parts;
  parts.method = std::move(request.method);
  bool has_subscription = false;
  bool has_result = false;
  SB_RETURN_IF_ERROR(
      Scanner(*request.params).WholeObject([&](std::string name, absl::string_view value) {
        if (name == "subscription") {
          parts.subscription = value;
          has_subscription = true;
        } else if (name == "result") {
          parts.result = value;
          has_result = true;
        }
        return absl::OkStatus();
      }));
  if (!has_subscription) return absl::InvalidArgumentError("params.subscription: is required");
  if (!has_result) return absl::InvalidArgumentError("params.result: is required");
  return parts;
}

std::string BuildBatch(const std::vector<absl::string_view>& requests) {
  size_t size = 2 + requests.size();
  for (absl::string_view request : requests) size += request.size();
  std::string body;
  body.reserve(size);
  body.push_back('[');
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i > 0) body.push_back(',');
    body.append(requests[i].data(), requests[i].size());
  }
  body.push_back(']');
  return body;
}

absl::StatusOr<std::vector<absl::string_view>> SplitBatchItems(absl::string_view body) {
  std::vector<absl::string_view> elements;
  SB_RETURN_IF_ERROR(Scanner(body).WholeArray([&](absl::string_view element) {
    elements.push_back(element);
    return absl::OkStatus();
  }));
  return elements;
}

std::optional<uint64_t> NumericId(const ResponseParts& parts) {
  uint64_t id = 0;
  if (!parts.id.has_value() || parts.id->empty() || !IsDigit(parts.id->front()) ||
      !absl::SimpleAtoi(*parts.id, &id)) {
    return std::nullopt;
  }
  return id;
}

absl::StatusOr<std::vector<std::string>> RequestMethods(absl::string_view body) {
  std::vector<std::string> methods;
  const size_t first = body.find_first_not_of(" \t\r\n");
  if (first != absl::string_view::npos && body[first] == '[') {
    SB_RETURN_IF_ERROR(Scanner(body).WholeArray([&](absl::string_view element) -> absl::Status {
      SB_ASSIGN_OR_RETURN(std::string method, RequestMethod(element));
      methods.push_back(std::move(method));
      return absl::OkStatus();
    }));
    return methods;
  }
  SB_ASSIGN_OR_RETURN(std::string method, RequestMethod(body));
  methods.push_back(std::move(method));
  return methods;
}

bool IsRateLimitError(absl::string_view error_json) {
  bool rate_limited = false;
  Scanner(error_json)
      .WholeObject([&](std::string name, absl::string_view value) {
        if (name == "code" && (value == "429" || value == "-32005")) rate_limited = true;
        if (name == "message") {
          absl::StatusOr<std::string> message = Scanner(value).String();
          if (message.ok()) {
            const std::string lower = absl::AsciiStrToLower(*message);
            if (absl::StrContains(lower, "rate limit") || absl::StrContains(lower, "rate-limit") ||
                absl::StrContains(lower, "too many requests")) {
              rate_limited = true;
            }
          }
        }
        return absl::OkStatus();
      })
      .IgnoreError();
  return rate_limited;
}

}  // namespace switchboard::upstream

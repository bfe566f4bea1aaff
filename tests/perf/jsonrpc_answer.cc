#include "tests/perf/jsonrpc_answer.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace switchboard::jsonrpc_provider {
namespace {

// Deeper JSON than this is refused rather than risk the stack.
constexpr int kMaxDepth = 256;

// ---------------------------------------------------------------------------
// A JSON scanner that validates and skips values, enough to find the "id"
// member of each request without building a document.

class Scanner {
 public:
  explicit Scanner(absl::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool AtEnd() const { return p_ == end_; }
  // Consumes c (after white space) when it is next.
  bool Take(char c) {
    SkipSpace();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  char Peek() {
    SkipSpace();
    return p_ < end_ ? *p_ : '\0';
  }
  const char* position() const { return p_; }

  // Skips one value (after white space); false when it is not valid JSON.
  bool SkipValue(int depth = 0) {
    if (depth > kMaxDepth) return false;
    SkipSpace();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"':
        return SkipString(nullptr);
      case '{': {
        ++p_;
        if (Take('}')) return true;
        do {
          SkipSpace();
          if (!SkipString(nullptr) || !Take(':') || !SkipValue(depth + 1)) return false;
        } while (Take(','));
        return Take('}');
      }
      case '[': {
        ++p_;
        if (Take(']')) return true;
        do {
          if (!SkipValue(depth + 1)) return false;
        } while (Take(','));
        return Take(']');
      }
      case 't':
        return SkipLiteral("true");
      case 'f':
        return SkipLiteral("false");
      case 'n':
        return SkipLiteral("null");
      default:
        return SkipNumber();
    }
  }

  // Skips a string at the cursor; with `decoded`, also appends its
  // contents with the escapes undone (UTF-8), for member names.
  bool SkipString(std::string* decoded) {
    if (p_ == end_ || *p_ != '"') return false;
    ++p_;
    while (p_ < end_) {
      unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        if (decoded) decoded->push_back(static_cast<char>(c));
        continue;
      }
      if (p_ == end_) return false;
      char e = *p_++;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          if (decoded) decoded->push_back(e);
          break;
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          if (decoded) decoded->push_back(' ');  // Never part of "id"; any byte will do.
          break;
        case 'u': {
          uint32_t code = 0;
          if (!Hex4(&code)) return false;
          if (decoded) AppendUtf8(code, decoded);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

 private:
  bool Hex4(uint32_t* code) {
    if (end_ - p_ < 4) return false;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      int digit = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
      if (digit < 0) return false;
      *code = *code * 16 + digit;
    }
    return true;
  }
  // Surrogate halves are kept as they are (as 3 bytes each): only ASCII
  // names matter here.
  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xE0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }
  bool SkipLiteral(absl::string_view literal) {
    if (static_cast<size_t>(end_ - p_) < literal.size() ||
        absl::string_view(p_, literal.size()) != literal) {
      return false;
    }
    p_ += literal.size();
    return true;
  }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool SkipNumber() {
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ == end_ || !IsDigit(*p_)) return false;
    if (*p_++ != '0') {
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (p_ == end_ || !IsDigit(*p_)) return false;
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !IsDigit(*p_)) return false;
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    return true;
  }

  const char* p_;
  const char* end_;
};

enum class Element { kRequest, kNotification, kInvalid, kMalformed };

// Reads one batch element (or a lone request) at the cursor: a request
// (its "id" member's raw text in *id), a notification (no "id"), a valid
// value that is not an object (kInvalid), or not JSON (kMalformed).
Element ReadRequest(Scanner& scanner, absl::string_view* id) {
  if (scanner.Peek() != '{') return scanner.SkipValue() ? Element::kInvalid : Element::kMalformed;
  scanner.Take('{');
  bool has_id = false;
  if (!scanner.Take('}')) {
    std::string name;
    do {
      scanner.SkipSpace();
      name.clear();
      if (!scanner.SkipString(&name) || !scanner.Take(':')) return Element::kMalformed;
      scanner.SkipSpace();
      const char* start = scanner.position();
      if (!scanner.SkipValue(1)) return Element::kMalformed;
      if (name == "id") {  // The last one wins, as in most parsers.
        has_id = true;
        *id = absl::string_view(start, scanner.position() - start);
      }
    } while (scanner.Take(','));
    if (!scanner.Take('}')) return Element::kMalformed;
  }
  return has_id ? Element::kRequest : Element::kNotification;
}

constexpr absl::string_view kParseError =
    R"({"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null})";
constexpr absl::string_view kInvalidRequest =
    R"({"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null})";

}  // namespace

std::string Answer(absl::string_view body, absl::string_view result, uint64_t* calls,
                   uint64_t* batches) {
  Scanner scanner(body);
  std::string out;
  auto respond = [&](absl::string_view id) {
    absl::StrAppend(&out, R"({"jsonrpc":"2.0","result":)", result, R"(,"id":)", id, "}");
  };
  absl::string_view id;
  if (scanner.Take('[')) {
    if (scanner.Take(']')) {
      scanner.SkipSpace();
      return std::string(scanner.AtEnd() ? kInvalidRequest : kParseError);
    }
    uint64_t batch_calls = 0;
    out.push_back('[');
    do {
      size_t before = out.size();
      if (before > 1) out.push_back(',');
      switch (ReadRequest(scanner, &id)) {
        case Element::kRequest:
          respond(id);
          ++batch_calls;
          break;
        case Element::kNotification:
          out.resize(before);
          break;
        case Element::kInvalid:
          absl::StrAppend(&out, kInvalidRequest);
          break;
        case Element::kMalformed:
          return std::string(kParseError);
      }
    } while (scanner.Take(','));
    if (!scanner.Take(']') || (scanner.SkipSpace(), !scanner.AtEnd())) {
      return std::string(kParseError);
    }
    *calls += batch_calls;
    ++*batches;
    if (out.size() == 1) return "";
    out.push_back(']');
    return out;
  }
  Element element = ReadRequest(scanner, &id);
  scanner.SkipSpace();
  if (element == Element::kMalformed || !scanner.AtEnd()) return std::string(kParseError);
  if (element == Element::kInvalid) return std::string(kInvalidRequest);
  if (element == Element::kNotification) return "";
  respond(id);
  ++*calls;
  return out;
}

}  // namespace switchboard::jsonrpc_provider

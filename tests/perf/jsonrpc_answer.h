// The JSON-RPC side of tests/perf/jsonrpc_provider.cc: the answer to a POST
// body, found by scanning it (no document is built): one response per call,
// carrying the call's id byte for byte. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace switchboard::jsonrpc_provider {

// The answer to a POST body, each response's result being `result` (raw
// JSON); empty when there is nothing to answer (only notifications). Adds the
// calls answered to *calls, and one to *batches for a batch. Malformed JSON
// gets JSON-RPC's -32700 error; an empty batch or an element that is not an
// object -32600.
std::string Answer(absl::string_view body, absl::string_view result, uint64_t* calls,
                   uint64_t* batches);

}  // namespace switchboard::jsonrpc_provider

#include "server/http/http_server_metrics.h"

#include "absl/strings/str_cat.h"
#include "prometheus/family.h"

namespace switchboard::http {

HttpServerGauges::HttpServerGauges(prometheus::Registry& registry, absl::string_view prefix,
                                   absl::string_view what)
    : open_(prometheus::BuildGauge()
                .Name(absl::StrCat(prefix, "_connections"))
                .Help(absl::StrCat("Open connections to ", what, "."))
                .Register(registry)
                .Add({})),
      refused_(prometheus::BuildCounter()
                   .Name(absl::StrCat(prefix, "_connections_refused_total"))
                   .Help(absl::StrCat("Connections to ", what,
                                      " closed at once because max_connections were open."))
                   .Register(registry)
                   .Add({})) {}

}  // namespace switchboard::http

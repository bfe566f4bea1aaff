#include "server/broker/amqp/topology.h"

#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::broker::amqp {

QueueDeclaration QueueDeclaration::Quorum(std::string name) {
  QueueDeclaration queue;
  queue.name = std::move(name);
  queue.arguments["x-queue-type"] = std::string("quorum");
  return queue;
}

bool operator==(const ExchangeDeclaration& a, const ExchangeDeclaration& b) {
  return std::tie(a.name, a.type, a.durable, a.auto_delete) ==
         std::tie(b.name, b.type, b.durable, b.auto_delete);
}

bool operator==(const QueueDeclaration& a, const QueueDeclaration& b) {
  return std::tie(a.name, a.durable, a.exclusive, a.auto_delete, a.arguments) ==
         std::tie(b.name, b.durable, b.exclusive, b.auto_delete, b.arguments);
}

bool operator==(const BindingDeclaration& a, const BindingDeclaration& b) {
  return std::tie(a.queue, a.exchange, a.binding_key) ==
         std::tie(b.queue, b.exchange, b.binding_key);
}

std::string Describe(const Declaration& declaration) {
  struct Visitor {
    std::string operator()(const ExchangeDeclaration& exchange) const {
      return absl::StrCat("exchange.declare '", exchange.name, "'");
    }
    std::string operator()(const QueueDeclaration& queue) const {
      return absl::StrCat("queue.declare '", queue.name, "'");
    }
    std::string operator()(const BindingDeclaration& binding) const {
      return absl::StrCat("queue.bind '", binding.queue, "' to '", binding.exchange, "' with '",
                          binding.binding_key, "'");
    }
  };
  return std::visit(Visitor{}, declaration);
}

}  // namespace switchboard::broker::amqp

#include "server/auth/client_registry.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::auth {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kMissing[] = "missing bearer token: send metadata \"authorization: Bearer <token>\"";
constexpr char kUnknown[] = "unknown bearer token";

// burn-detector (weight 2, 50 calls/s, two topic patterns) and indexer.
std::vector<ClientCredential> Clients() {
  ClientCredential burn;
  burn.token = "burn-secret-0123456789";
  burn.identity.id = "burn-detector";
  burn.identity.weight = 2;
  burn.identity.requests_per_second = 50;
  burn.identity.allowed_topics = {"jobs", "news.*"};
  ClientCredential indexer;
  indexer.token = "idx";
  indexer.identity.id = "indexer";
  return {burn, indexer};
}

TEST(ClientRegistryTest, WithoutClientsEveryCallerIsAnonymous) {
  const ClientRegistry registry({});
  EXPECT_TRUE(registry.anonymous());
  for (const char* authorization : {"", "Bearer whatever", "Basic Zm9vOmJhcg==", "garbage"}) {
    absl::StatusOr<ClientIdentity> client = registry.Authenticate(authorization);
    ASSERT_THAT(client, IsOk()) << authorization;
    EXPECT_EQ(client->id, "anonymous");
    EXPECT_EQ(client->weight, 1u);
    EXPECT_EQ(client->requests_per_second, 0);
    EXPECT_TRUE(client->allowed_topics.empty());
    EXPECT_TRUE(client->MayUseTopic("any.topic"));
  }
}

TEST(ClientRegistryTest, ABearerTokenMapsToItsClient) {
  const ClientRegistry registry(Clients());
  EXPECT_FALSE(registry.anonymous());

  absl::StatusOr<ClientIdentity> burn = registry.Authenticate("Bearer burn-secret-0123456789");
  ASSERT_THAT(burn, IsOk());
  EXPECT_EQ(burn->id, "burn-detector");
  EXPECT_EQ(burn->weight, 2u);
  EXPECT_EQ(burn->requests_per_second, 50);
  EXPECT_THAT(burn->allowed_topics, ElementsAre("jobs", "news.*"));

  absl::StatusOr<ClientIdentity> indexer = registry.Authenticate("Bearer idx");
  ASSERT_THAT(indexer, IsOk());
  EXPECT_EQ(indexer->id, "indexer");
  EXPECT_EQ(indexer->weight, 1u);
  EXPECT_TRUE(indexer->allowed_topics.empty());
}

TEST(ClientRegistryTest, TheSchemeIsCaseInsensitiveAndSpacesAreTolerated) {
  const ClientRegistry registry(Clients());
  for (const char* authorization :
       {"bearer idx", "BEARER idx", "Bearer   idx", " Bearer idx ", "Bearer\tidx"}) {
    absl::StatusOr<ClientIdentity> client = registry.Authenticate(authorization);
    ASSERT_THAT(client, IsOk()) << authorization;
    EXPECT_EQ(client->id, "indexer");
  }
}

TEST(ClientRegistryTest, AMissingTokenIsUnauthenticated) {
  const ClientRegistry registry(Clients());
  for (const char* authorization :
       {"", "   ", "Bearer", "Bearer   ", "Beareridx", "Basic idx", "idx", "Token idx"}) {
    EXPECT_THAT(registry.Authenticate(authorization),
                StatusIs(absl::StatusCode::kUnauthenticated, Eq(kMissing)))
        << authorization;
  }
}

TEST(ClientRegistryTest, AnUnknownTokenIsUnauthenticatedAndNeverEchoed) {
  const ClientRegistry registry(Clients());
  for (const char* token : {"wrong", "id", "idx2", "IDX", "burn-secret-012345678",
                            "burn-secret-01234567890", "burn-secret-0123456789 idx"}) {
    absl::StatusOr<ClientIdentity> client = registry.Authenticate(absl::StrCat("Bearer ", token));
    EXPECT_THAT(client, StatusIs(absl::StatusCode::kUnauthenticated, Eq(kUnknown))) << token;
    EXPECT_THAT(client, StatusIs(absl::StatusCode::kUnauthenticated, Not(HasSubstr(token))));
  }
}

// A token client, one known by its certificate's subject and one by a SAN.
std::vector<ClientCredential> ClientsWithCertificates() {
  std::vector<ClientCredential> clients = Clients();
  ClientCredential by_subject;
  by_subject.cert_subject = "CN=worker-a,O=Acme";
  by_subject.identity.id = "worker-a";
  ClientCredential by_san;
  by_san.cert_san = "spiffe://acme/worker-b";
  by_san.identity.id = "worker-b";
  clients.push_back(by_subject);
  clients.push_back(by_san);
  return clients;
}

TEST(ClientRegistryTest, ACertificateMapsToTheClientOfItsSubjectOrOfOneOfItsSans) {
  const ClientRegistry registry(ClientsWithCertificates());
  const PeerCertificate a{"CN=worker-a,O=Acme", {"worker-a.acme.internal"}};
  EXPECT_THAT(registry.Authenticate("", &a), IsOkAndHolds(Field(&ClientIdentity::id, "worker-a")));
  const PeerCertificate b{"CN=b,O=Acme", {"b.acme.internal", "spiffe://acme/worker-b"}};
  EXPECT_THAT(registry.Authenticate("", &b), IsOkAndHolds(Field(&ClientIdentity::id, "worker-b")));
  // Exact matches only: no prefix, no case folding, the subject is not a SAN.
  for (const PeerCertificate& other :
       {PeerCertificate{"CN=worker-a", {}}, PeerCertificate{"cn=worker-a,o=acme", {}},
        PeerCertificate{"CN=x", {"spiffe://acme/worker"}},
        PeerCertificate{"CN=x", {"CN=worker-a,O=Acme"}}}) {
    EXPECT_THAT(registry.Authenticate("", &other),
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("matches no client")))
        << other.subject;
  }
}

TEST(ClientRegistryTest, ATokenDecidesOverACertificate) {
  const ClientRegistry registry(ClientsWithCertificates());
  const PeerCertificate a{"CN=worker-a,O=Acme", {}};
  EXPECT_THAT(registry.Authenticate("Bearer idx", &a),
              IsOkAndHolds(Field(&ClientIdentity::id, "indexer")));
  // A wrong token is refused, whatever the certificate.
  EXPECT_THAT(registry.Authenticate("Bearer wrong", &a),
              StatusIs(absl::StatusCode::kUnauthenticated, Eq(kUnknown)));
  // A certificate-only client has no token that an empty one could match.
  EXPECT_THAT(registry.Authenticate("Bearer ", nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated, Eq(kMissing)));
  EXPECT_THAT(registry.Authenticate("", nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated, Eq(kMissing)));
}

TEST(ClientIdentityTest, MayUseTopicMatchesExactNamesAndPrefixes) {
  ClientIdentity client;
  client.id = "c";
  client.allowed_topics = {"jobs", "news.*"};
  EXPECT_TRUE(client.MayUseTopic("jobs"));
  EXPECT_TRUE(client.MayUseTopic("news.sports"));
  EXPECT_TRUE(client.MayUseTopic("news."));
  EXPECT_FALSE(client.MayUseTopic("jobs2"));
  EXPECT_FALSE(client.MayUseTopic("job"));
  EXPECT_FALSE(client.MayUseTopic("jobs:dlq"));
  EXPECT_FALSE(client.MayUseTopic("news"));
  EXPECT_FALSE(client.MayUseTopic("other"));
  EXPECT_FALSE(client.MayUseTopic(""));
}

TEST(ClientIdentityTest, NoAllowedTopicsMeansEveryTopic) {
  ClientIdentity client;
  client.id = "c";
  EXPECT_TRUE(client.MayUseTopic("jobs"));
  EXPECT_TRUE(client.MayUseTopic("anything.at:all"));
}

TEST(ClientRegistryTest, AuthenticatesFromManyThreadsAtOnce) {
  const ClientRegistry registry(Clients());
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 2000;
  std::atomic<int> burn{0};
  std::atomic<int> indexer{0};
  std::atomic<int> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        const char* authorization = i % 3 == 0   ? "Bearer burn-secret-0123456789"
                                    : i % 3 == 1 ? "Bearer idx"
                                                 : "Bearer nope";
        absl::StatusOr<ClientIdentity> client = registry.Authenticate(authorization);
        if (!client.ok()) {
          ++rejected;
        } else if (client->id == "burn-detector") {
          ++burn;
        } else if (client->id == "indexer") {
          ++indexer;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(burn.load(), kThreads * 667);
  EXPECT_EQ(indexer.load(), kThreads * 667);
  EXPECT_EQ(rejected.load(), kThreads * 666);
}

}  // namespace
}  // namespace switchboard::auth

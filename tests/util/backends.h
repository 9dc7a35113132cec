// The backends of the event store that the service's contract tests run
// against: the embedded log, in a temporary directory, and a JetStream
// stream on a nats-server started for the test (tests/util/nats_servers.h).
//
// A suite derives its fixture from BackendTest and instantiates it with
// INSTANTIATE_TEST_SUITE_P(Backends, Suite, kAllBackends, BackendName);
// every test then runs once per backend, and UseBackend points a server's
// options at the one under test.

#ifndef FANOUT_TESTS_UTIL_BACKENDS_H_
#define FANOUT_TESTS_UTIL_BACKENDS_H_

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/app/fanout_server.h"
#include "tests/util/nats_servers.h"
#include "tests/util/temp_dir.h"

namespace fanout::testing {

enum class Backend { kEmbedded, kNats };

inline const auto kAllBackends =
    ::testing::Values(Backend::kEmbedded, Backend::kNats);

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kEmbedded ? "Embedded" : "Nats";
}

class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() != Backend::kNats) return;
    absl::StatusOr<std::unique_ptr<NatsServers>> nats =
        NatsServers::Start(1, nats_dir_.path());
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
  }

  // Points `options` at the backend under test: the same data directory,
  // or the same NATS server, for every server a test starts.
  void UseBackend(FanoutServerOptions* options) const {
    options->log.data_dir = data_dir_.path();
    if (GetParam() == Backend::kNats) options->bus = nats_->urls();
  }

  bool nats() const { return GetParam() == Backend::kNats; }

  TempDir data_dir_;

 private:
  TempDir nats_dir_;
  std::unique_ptr<NatsServers> nats_;
};

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_BACKENDS_H_

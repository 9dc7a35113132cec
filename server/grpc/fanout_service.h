// The gRPC face of the hub: serves staffify.fanout.v1.Fanout/Subscribe with
// the callback API, one reactor per stream.
//
// Each stream keeps at most one write in flight; when it completes, the
// reactor pulls the next matching event from its hub Subscription, so a slow
// client only holds back its own stream.

#ifndef FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_
#define FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_

#include <cstddef>

#include "server/fanout/event_hub.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

namespace fanout {

struct FanoutServiceOptions {
  // Most patterns one Subscribe request may carry.
  size_t max_patterns = 64;
  // Longest pattern accepted, in bytes.
  size_t max_pattern_bytes = 256;
};

class FanoutService final
    : public staffify::fanout::v1::Fanout::CallbackService {
 public:
  // `hub` must outlive the service and every stream it started.
  FanoutService(EventHub* hub, FanoutServiceOptions options = {});

  grpc::ServerWriteReactor<staffify::fanout::v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* context,
      const staffify::fanout::v1::SubscribeRequest* request) override;

 private:
  EventHub* const hub_;
  const FanoutServiceOptions options_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_

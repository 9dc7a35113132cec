// fanout-subscribe: subscribes to event type patterns and prints each event
// as one JSON object per line, with Staffify's own keys. Ctrl-C ends it.

#include <grpcpp/grpcpp.h>

#include <boost/json.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/convert/event_json.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "host:port of the fanout-server gRPC endpoint.");
ABSL_FLAG(bool, raw_body, false,
          "Also print each delivery's original body as \"rawBody\".");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest event accepted from the server, in bytes.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Usage: fanout-subscribe [--target=HOST:PORT] [PATTERN...]\n"
      "Prints every matching event as one JSON line. A pattern is an event\n"
      "type (ticket.created), a domain (ticket.*) or * (the default).");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);

  staffify::fanout::v1::SubscribeRequest request;
  for (size_t i = 1; i < args.size(); ++i) request.add_event_types(args[i]);

  // Stop signals go to a watcher thread that cancels the call, so that the
  // stream ends through gRPC rather than by killing the process mid-line.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target),
                                           grpc::InsecureChannelCredentials(),
                                           channel_args);
  auto stub = staffify::fanout::v1::Fanout::NewStub(channel);

  grpc::ClientContext context;
  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    stopping = true;
    context.TryCancel();
  });
  watcher.detach();

  auto reader = stub->Subscribe(&context, request);
  staffify::fanout::v1::SubscribeResponse response;
  const bool raw_body = absl::GetFlag(FLAGS_raw_body);
  while (reader->Read(&response)) {
    if (!response.has_event()) continue;
    std::cout << boost::json::serialize(
                     fanout::EventToJson(response.event(), raw_body))
              << std::endl;
  }
  const grpc::Status status = reader->Finish();
  if (stopping) return EXIT_SUCCESS;
  std::cerr << "fanout-subscribe: stream ended: " << status.error_code() << " "
            << status.error_message() << "\n";
  return status.ok() ? EXIT_SUCCESS : EXIT_FAILURE;
}

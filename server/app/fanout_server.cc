#include "server/app/fanout_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace fanout {

FanoutServer::FanoutServer(FanoutServerOptions options)
    : options_(std::move(options)),
      converter_(options_.converter),
      hub_(options_.hub),
      ingestor_(&converter_, &hub_),
      handler_(&ingestor_),
      service_(&hub_, options_.service),
      io_context_(options_.http_threads) {}

absl::StatusOr<std::unique_ptr<FanoutServer>> FanoutServer::Start(
    FanoutServerOptions options) {
  std::unique_ptr<FanoutServer> server(new FanoutServer(std::move(options)));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server->options_.grpc_address,
                           grpc::InsecureServerCredentials(),
                           &server->grpc_port_);
  builder.RegisterService(&server->service_);
  server->grpc_ = builder.BuildAndStart();
  if (server->grpc_ == nullptr || server->grpc_port_ == 0) {
    server->stopped_ = true;
    if (server->grpc_) server->grpc_->Shutdown();
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ",
                                               server->options_.grpc_address));
  }

  server->http_ = std::make_unique<HttpServer>(
      &server->io_context_, &server->handler_, server->options_.http);
  if (absl::Status status = server->http_->Start(); !status.ok()) {
    server->Shutdown();
    return status;
  }
  for (int i = 0; i < std::max(1, server->options_.http_threads); ++i) {
    server->http_threads_.emplace_back([server = server.get()] {
      auto work = boost::asio::make_work_guard(server->io_context_);
      server->io_context_.run();
    });
  }

  spdlog::info("listening: HTTP {}:{} (POST {}), gRPC {} (port {})",
               server->options_.http.address, server->http_->port(),
               WebhookHandler::kWebhookPath, server->options_.grpc_address,
               server->grpc_port_);
  return server;
}

FanoutServer::~FanoutServer() { Shutdown(); }

void FanoutServer::Shutdown() {
  if (stopped_) return;
  stopped_ = true;

  if (http_) http_->Stop();
  hub_.Close();
  if (grpc_) {
    grpc_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(options_.shutdown_grace));
    grpc_->Wait();
  }
  io_context_.stop();
  for (std::thread& thread : http_threads_) thread.join();
  http_threads_.clear();
  spdlog::info("stopped after seq {}", hub_.last_sequence());
}

}  // namespace fanout

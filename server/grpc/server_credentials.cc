#include "server/grpc/server_credentials.h"

#include <utility>

#include "absl/time/clock.h"
#include "server/auth/tls_files.h"
#include "spdlog/spdlog.h"

namespace fanout {

absl::Status ValidateGrpcTlsOptions(const GrpcTlsOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--grpc_tls_cert and --grpc_tls_key go together: give both or "
        "neither");
  }
  if (!options.client_ca_file.empty() && !options.enabled()) {
    return absl::InvalidArgumentError(
        "--grpc_tls_client_ca needs --grpc_tls_cert and --grpc_tls_key: "
        "mutual TLS is TLS first");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const GrpcTlsOptions& options) {
  if (absl::Status valid = ValidateGrpcTlsOptions(options); !valid.ok()) {
    return valid;
  }
  if (!options.enabled()) return grpc::InsecureServerCredentials();

  absl::StatusOr<TlsIdentity> identity = ReadTlsIdentity(
      options.cert_file, "--grpc_tls_cert", options.key_file, "--grpc_tls_key");
  if (!identity.ok()) return identity.status();
  const absl::Time now = absl::Now();
  if (now < identity->summary.not_before || now > identity->summary.not_after) {
    spdlog::warn(
        "gRPC TLS certificate is not valid now; clients that check it will "
        "refuse to connect file={:?} subject={:?} not_before={} not_after={}",
        options.cert_file, identity->summary.subject,
        absl::FormatTime(identity->summary.not_before),
        absl::FormatTime(identity->summary.not_after));
  }

  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadCaCertificates(options.client_ca_file, "--grpc_tls_client_ca");
    if (!ca.ok()) return ca.status();
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    ssl.pem_root_certs = *std::move(ca);
  }
  spdlog::info(
      "gRPC serves TLS cert={:?} subject={:?} not_after={} client_ca={:?}",
      options.cert_file, identity->summary.subject,
      absl::FormatTime(identity->summary.not_after), options.client_ca_file);
  ssl.pem_key_cert_pairs.push_back({std::move(identity->private_key),
                                    std::move(identity->certificate_chain)});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace fanout

// The credentials of the gRPC port: plaintext, TLS, or mutual TLS (clients
// must present a certificate signed by a given CA), from PEM files that are
// read and checked when the server starts.

#ifndef FANOUT_SERVER_GRPC_SERVER_CREDENTIALS_H_
#define FANOUT_SERVER_GRPC_SERVER_CREDENTIALS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace fanout {

struct GrpcTlsOptions {
  // The PEM certificate chain (leaf first) and private key the gRPC port
  // serves TLS with. Both or neither; neither means plaintext.
  std::string cert_file;
  std::string key_file;
  // PEM certificates of the CAs that sign client certificates. When set,
  // every client must present a certificate signed by one of them (mutual
  // TLS). REQUIRES: cert_file and key_file are set.
  std::string client_ca_file;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// Returns InvalidArgument when `options` name a key without a certificate
// (or the other way round), or a client CA without either.
absl::Status ValidateGrpcTlsOptions(const GrpcTlsOptions& options);

// Reads the files of `options` and returns the credentials to listen with:
// insecure ones when TLS is not enabled. Fails with the errors of
// ReadTlsIdentity and ReadCaCertificates (server/auth/tls_files.h), whose
// messages name the file and the flag. Logs what it set up, and a warning
// for a certificate outside its validity period.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const GrpcTlsOptions& options);

}  // namespace fanout

#endif  // FANOUT_SERVER_GRPC_SERVER_CREDENTIALS_H_

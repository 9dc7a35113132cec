// What a subscriber needs to reach a fanout-server that serves gRPC over TLS
// or mutual TLS, or that asks for access tokens: channel credentials built
// from PEM files, and the token read from a file or the environment.
//
// Files are read and checked here, so that a wrong path or a mismatched key
// is reported at once, naming the file, rather than as a failed handshake.

#ifndef FANOUT_CLIENT_CHANNEL_CREDENTIALS_H_
#define FANOUT_CLIENT_CHANNEL_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace fanout {

struct ClientTlsOptions {
  // PEM certificates of the CA that signed the server's certificate.
  // Setting it turns TLS on.
  std::string ca_file;
  // The client's PEM certificate chain and private key, for servers that
  // require mutual TLS. Both or neither; they need ca_file.
  std::string cert_file;
  std::string key_file;

  bool enabled() const {
    return !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

// Returns TLS channel credentials for `options`, or insecure ones when TLS
// is not enabled. Returns InvalidArgument for a certificate without its key
// (or the other way round) or a client certificate without a CA, and the
// errors of ReadTlsIdentity and ReadCaCertificates
// (server/auth/tls_files.h), which name the file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options);

// Returns the access token to send: the first line of the file at `path`
// (without surrounding white space) when `path` is set, else the value of
// the environment variable `env_var` if set, else "". The file must not be
// accessible to other users (ReadProtectedFile). InvalidArgument when the
// token found is empty or not printable ASCII without spaces.
absl::StatusOr<std::string> ReadAccessToken(const std::string& path,
                                            const char* env_var);

}  // namespace fanout

#endif  // FANOUT_CLIENT_CHANNEL_CREDENTIALS_H_

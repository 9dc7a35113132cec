#include "client/channel_credentials.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/auth/protected_file.h"
#include "server/auth/tls_files.h"

namespace fanout {
namespace {

bool IsTokenCharacter(char c) { return c > ' ' && c < 0x7f; }

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureChannelCredentials();
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate and its key go together: give both or "
        "neither");
  }
  if (options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs the CA certificate that signed the server's (a CA file)");
  }

  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca =
      ReadCaCertificates(options.ca_file, "CA file");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!options.cert_file.empty()) {
    absl::StatusOr<TlsIdentity> identity =
        ReadTlsIdentity(options.cert_file, "client certificate",
                        options.key_file, "client key");
    if (!identity.ok()) return identity.status();
    ssl.pem_cert_chain = std::move(identity->certificate_chain);
    ssl.pem_private_key = std::move(identity->private_key);
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::string> ReadAccessToken(const std::string& path,
                                            const char* env_var) {
  std::string token;
  std::string source;
  if (!path.empty()) {
    absl::StatusOr<std::string> text = ReadProtectedFile(path, "token file");
    if (!text.ok()) return text.status();
    const std::vector<absl::string_view> lines = absl::StrSplit(*text, '\n');
    token = std::string(absl::StripAsciiWhitespace(lines.front()));
    source = path;
  } else if (const char* value = std::getenv(env_var)) {
    token = std::string(absl::StripAsciiWhitespace(value));
    source = env_var;
    if (token.empty()) return std::string();
  } else {
    return std::string();
  }
  if (token.empty() ||
      !std::all_of(token.begin(), token.end(), IsTokenCharacter)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the access token in ", source,
        " must be printable ASCII without spaces, on the first line"));
  }
  return token;
}

}  // namespace fanout

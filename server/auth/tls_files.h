// The PEM files of a TLS set-up (a certificate chain with its private key,
// and the certificates of a trusted CA), read and checked with OpenSSL so
// that an unreadable, malformed or mismatched file stops the program at
// start-up with a message naming it, instead of failing every handshake.
//
// Used by fanout-server for gRPC's TLS and mutual TLS, and by the clients
// for the matching channel credentials.

#ifndef FANOUT_SERVER_AUTH_TLS_FILES_H_
#define FANOUT_SERVER_AUTH_TLS_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fanout {

// What start-up logs about a certificate file.
struct CertificateSummary {
  // Certificates in the file (a chain: the first is the leaf).
  int count = 0;
  // The first certificate's subject ("CN=fanout.internal,O=...") and
  // validity.
  std::string subject;
  absl::Time not_before;
  absl::Time not_after;
};

// Parses `pem`, one or more PEM certificates, read from the file `path`.
// Returns InvalidArgument naming `path` when it holds no certificate or a
// malformed one.
absl::StatusOr<CertificateSummary> ParseCertificates(const std::string& pem,
                                                     const std::string& path);

// A certificate chain and the private key of its first certificate.
struct TlsIdentity {
  std::string certificate_chain;  // PEM
  std::string private_key;        // PEM
  CertificateSummary summary;
};

// Reads the certificate chain at `cert_path` and the private key at
// `key_path`; `cert_what` and `key_what` name the two in messages (flag
// names). Fails with ReadPublicFile's and ReadProtectedFile's errors (see
// protected_file.h: the key file must not be accessible to others), with
// InvalidArgument when a file holds no usable certificate or unencrypted
// private key, and with InvalidArgument when the key is not the first
// certificate's.
absl::StatusOr<TlsIdentity> ReadTlsIdentity(const std::string& cert_path,
                                            const std::string& cert_what,
                                            const std::string& key_path,
                                            const std::string& key_what);

// Reads the trusted CA certificates at `path` (`what` names it). Fails as
// ReadPublicFile does, or with InvalidArgument when the file holds no
// usable certificate.
absl::StatusOr<std::string> ReadCaCertificates(const std::string& path,
                                               const std::string& what);

}  // namespace fanout

#endif  // FANOUT_SERVER_AUTH_TLS_FILES_H_

#include "server/auth/tls_files.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/auth/protected_file.h"

namespace fanout {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Takes OpenSSL's queued errors, which would otherwise be reported against
// some later, unrelated call, and returns the last one as text.
std::string TakeOpenSslError() {
  unsigned long last = 0;
  while (unsigned long error = ERR_get_error()) last = error;
  if (last == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(last, text, sizeof text);
  return text;
}

// Refuses to prompt for a passphrase: gRPC cannot use an encrypted key.
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::Time FromAsn1Time(const ASN1_TIME* time) {
  struct tm parts = {};
  if (time == nullptr || ASN1_TIME_to_tm(time, &parts) != 1) {
    return absl::InfinitePast();
  }
  return absl::FromTimeT(timegm(&parts));
}

std::string Subject(X509* certificate) {
  BioPtr out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), X509_get_subject_name(certificate), 0,
                     XN_FLAG_RFC2253);
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// The first certificate in `pem`.
X509Ptr FirstCertificate(const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

}  // namespace

absl::StatusOr<CertificateSummary> ParseCertificates(const std::string& pem,
                                                     const std::string& path) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  CertificateSummary summary;
  while (X509Ptr certificate{
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
    if (summary.count++ == 0) {
      summary.subject = Subject(certificate.get());
      summary.not_before = FromAsn1Time(X509_get0_notBefore(certificate.get()));
      summary.not_after = FromAsn1Time(X509_get0_notAfter(certificate.get()));
    }
  }
  // The loop ends at the end of the text (no further PEM block), or at a
  // block that does not parse.
  const unsigned long error = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(error) == ERR_LIB_PEM &&
                         ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  if (summary.count == 0) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(path, " holds no PEM certificate"));
  }
  if (!clean_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        " holds a certificate that does not parse: ", TakeOpenSslError()));
  }
  ERR_clear_error();
  return summary;
}

absl::StatusOr<TlsIdentity> ReadTlsIdentity(const std::string& cert_path,
                                            const std::string& cert_what,
                                            const std::string& key_path,
                                            const std::string& key_what) {
  TlsIdentity identity;
  absl::StatusOr<std::string> chain = ReadPublicFile(cert_path, cert_what);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<CertificateSummary> summary =
      ParseCertificates(*chain, absl::StrCat(cert_what, ": ", cert_path));
  if (!summary.ok()) return summary.status();
  absl::StatusOr<std::string> key = ReadProtectedFile(key_path, key_what);
  if (!key.ok()) return key.status();

  ERR_clear_error();
  BioPtr bio = MemoryBio(*key);
  KeyPtr private_key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (private_key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        key_what, ": ", key_path,
        " holds no usable PEM private key (an encrypted key cannot be "
        "used): ",
        TakeOpenSslError()));
  }
  X509Ptr leaf = FirstCertificate(*chain);
  if (leaf == nullptr ||
      X509_check_private_key(leaf.get(), private_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(key_what, ": the key in ", key_path,
                     " does not belong to the certificate in ", cert_path, " (",
                     cert_what, ")"));
  }
  ERR_clear_error();

  identity.certificate_chain = *std::move(chain);
  identity.private_key = *std::move(key);
  identity.summary = *std::move(summary);
  return identity;
}

absl::StatusOr<std::string> ReadCaCertificates(const std::string& path,
                                               const std::string& what) {
  absl::StatusOr<std::string> pem = ReadPublicFile(path, what);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<CertificateSummary> summary =
      ParseCertificates(*pem, absl::StrCat(what, ": ", path));
  if (!summary.ok()) return summary.status();
  return pem;
}

}  // namespace fanout

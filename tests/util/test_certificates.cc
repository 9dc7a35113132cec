#include "tests/util/test_certificates.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fanout::testing {
namespace {

// Extensions of each kind of certificate. Given in a file of our own, so
// that the machine's openssl.cnf cannot change them.
constexpr char kConfig[] = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
)";

std::string Quote(const std::string& text) {
  return absl::StrCat("'", text, "'");
}

class Openssl {
 public:
  explicit Openssl(std::string dir) : dir_(std::move(dir)) {}

  // Runs `openssl <args>` in the directory; output goes to a log there.
  absl::Status Run(const std::vector<std::string>& args) {
    std::vector<std::string> quoted;
    for (const std::string& arg : args) quoted.push_back(Quote(arg));
    const std::string log = dir_ + "/openssl.log";
    const std::string command =
        absl::StrCat("cd ", Quote(dir_), " && openssl ",
                     absl::StrJoin(quoted, " "), " >>", Quote(log), " 2>&1");
    const int status = std::system(command.c_str());
    if (status != 0) {
      std::ifstream in(log);
      std::stringstream text;
      text << in.rdbuf();
      return absl::InternalError(
          absl::StrCat("openssl ", absl::StrJoin(args, " "), " failed (",
                       status, "):\n", text.str()));
    }
    return absl::OkStatus();
  }

  // A self-signed CA: <name>.pem and <name>.key.
  absl::Status MakeCa(const std::string& name, const std::string& subject) {
    return Run({"req", "-config", "openssl.cnf", "-x509", "-extensions",
                "ca_ext", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                name + ".key", "-out", name + ".pem", "-days", "2", "-subj",
                subject});
  }

  // A certificate signed by CA `ca`, with extensions `extensions`:
  // <name>.pem and <name>.key.
  absl::Status MakeLeaf(const std::string& name, const std::string& subject,
                        const std::string& ca, const std::string& extensions) {
    absl::Status status =
        Run({"req", "-config", "openssl.cnf", "-new", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             name + ".key", "-out", name + ".csr", "-subj", subject});
    if (!status.ok()) return status;
    return Run({"x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
                "-CAkey", ca + ".key", "-CAcreateserial", "-days", "2",
                "-extfile", "openssl.cnf", "-extensions", extensions, "-out",
                name + ".pem"});
  }

 private:
  const std::string dir_;
};

}  // namespace

absl::StatusOr<TestCertificates> TestCertificates::Create(
    const std::string& dir) {
  {
    std::ofstream config(dir + "/openssl.cnf");
    config << kConfig;
    if (!config) return absl::InternalError("cannot write openssl.cnf");
  }
  Openssl openssl(dir);
  for (absl::Status status :
       {openssl.MakeCa("ca", "/CN=fanout test CA"),
        openssl.MakeLeaf("server", "/CN=localhost", "ca", "server_ext"),
        openssl.MakeLeaf("client", "/CN=test-subscriber", "ca", "client_ext"),
        openssl.MakeCa("other-ca", "/CN=unrelated test CA"),
        openssl.MakeLeaf("other-client", "/CN=stranger", "other-ca",
                         "client_ext")}) {
    if (!status.ok()) return status;
  }

  TestCertificates certificates;
  certificates.ca = dir + "/ca.pem";
  certificates.server_cert = dir + "/server.pem";
  certificates.server_key = dir + "/server.key";
  certificates.client_cert = dir + "/client.pem";
  certificates.client_key = dir + "/client.key";
  certificates.other_ca = dir + "/other-ca.pem";
  certificates.other_client_cert = dir + "/other-client.pem";
  certificates.other_client_key = dir + "/other-client.key";
  for (const std::string& key :
       {certificates.server_key, certificates.client_key,
        certificates.other_client_key, dir + "/ca.key",
        dir + "/other-ca.key"}) {
    if (chmod(key.c_str(), 0600) != 0) {
      return absl::InternalError(absl::StrCat("cannot chmod ", key));
    }
  }
  return certificates;
}

}  // namespace fanout::testing

#include "tests/util/nats_servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#ifndef FANOUT_NATS_SERVER_BINARY
#define FANOUT_NATS_SERVER_BINARY "/usr/sbin/nats-server"
#endif

namespace fanout::testing {
namespace {

constexpr char kServerBinary[] = FANOUT_NATS_SERVER_BINARY;
constexpr char kClusterName[] = "fanout-test";
constexpr int kStartAttempts = 3;
constexpr absl::Duration kReadyTimeout = absl::Seconds(30);
constexpr absl::Duration kStopGrace = absl::Seconds(10);
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);
constexpr int kLogTailLines = 20;

// A node's configuration: $0 its server name, $1 its client port, $2 its
// monitoring port, $3 its JetStream store. JetStream's limits are caps
// (nothing is reserved up front); its defaults would offer most of the
// machine's memory and disk. Messages may be as large as fanout-server's
// largest event, as its start requires.
constexpr char kNodeConfig[] = R"(server_name: "$0"
listen: "127.0.0.1:$1"
http: "127.0.0.1:$2"
max_payload: 8MB
jetstream {
  store_dir: "$3"
  max_memory_store: 256MB
  max_file_store: 1GB
}
)";

// What a cluster's node adds: $0 the cluster's name, $1 the node's route
// port, $2 the routes to the other nodes.
constexpr char kClusterConfig[] = R"(cluster {
  name: "$0"
  listen: "127.0.0.1:$1"
  routes: [$2]
}
)";

// A socket or file descriptor, closed when it goes out of scope.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in LoopbackAddress(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

// `count` distinct ports that were free on 127.0.0.1 a moment ago. All the
// probing sockets stay bound until every port is picked, so that no port
// is picked twice.
absl::StatusOr<std::vector<int>> FreeLoopbackPorts(int count) {
  std::vector<std::unique_ptr<Descriptor>> sockets;
  std::vector<int> ports;
  for (int i = 0; i < count; ++i) {
    sockets.push_back(std::make_unique<Descriptor>(
        socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    const int fd = sockets.back()->get();
    sockaddr_in address = LoopbackAddress(0);
    socklen_t length = sizeof(address);
    if (fd < 0 ||
        bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot pick a free port on 127.0.0.1: ", std::strerror(errno)));
    }
    ports.push_back(ntohs(address.sin_port));
  }
  return ports;
}

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// GET `path` from 127.0.0.1:`port` over HTTP/1.0, where the server closes
// the connection after its answer. Each step waits at most a second.
absl::StatusOr<HttpAnswer> HttpGet(int port, const std::string& path) {
  Descriptor socket_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket_fd.get() < 0) {
    return absl::UnavailableError(
        absl::StrCat("socket: ", std::strerror(errno)));
  }
  const timeval timeout{1, 0};
  setsockopt(socket_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout,
             sizeof(timeout));
  setsockopt(socket_fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout,
             sizeof(timeout));
  const sockaddr_in address = LoopbackAddress(port);
  if (connect(socket_fd.get(), reinterpret_cast<const sockaddr*>(&address),
              sizeof(address)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to port ", port, ": ", std::strerror(errno)));
  }

  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(socket_fd.get(), request.data() + sent,
                           request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("send to port ", port, ": ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    const ssize_t n = recv(socket_fd.get(), buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      return absl::UnavailableError(
          absl::StrCat("receive from port ", port, ": ", std::strerror(errno)));
    }
    response.append(buffer, static_cast<size_t>(n));
  }

  // "HTTP/1.x NNN reason\r\n" headers "\r\n\r\n" body
  HttpAnswer answer;
  const size_t body_start = response.find("\r\n\r\n");
  const std::vector<absl::string_view> status_line =
      absl::StrSplit(response.substr(0, response.find("\r\n")), ' ');
  if (body_start == std::string::npos || status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &answer.status)) {
    return absl::UnavailableError(
        absl::StrCat("not an HTTP answer from port ", port));
  }
  answer.body = response.substr(body_start + 4);
  return answer;
}

// What a node's /jsz says of the JetStream meta group.
struct MetaCluster {
  std::string leader;  // Empty while there is none.
  int replicas = 0;    // The peers the leader replicates to...
  int current = 0;     // ...and how many of them are current.
};

absl::StatusOr<MetaCluster> ReadMetaCluster(const std::string& jsz) {
  std::error_code error;
  const boost::json::value root = boost::json::parse(jsz, error);
  const boost::json::object* object = root.if_object();
  if (error || object == nullptr) {
    return absl::UnavailableError("/jsz answered with malformed JSON");
  }
  MetaCluster meta;
  const boost::json::value* cluster = object->if_contains("meta_cluster");
  if (cluster == nullptr || !cluster->is_object()) return meta;
  const boost::json::object& fields = cluster->get_object();
  if (const boost::json::value* leader = fields.if_contains("leader");
      leader != nullptr && leader->is_string()) {
    meta.leader = std::string(leader->get_string());
  }
  if (const boost::json::value* replicas = fields.if_contains("replicas");
      replicas != nullptr && replicas->is_array()) {
    for (const boost::json::value& replica : replicas->get_array()) {
      ++meta.replicas;
      const boost::json::value* current =
          replica.is_object() ? replica.get_object().if_contains("current")
                              : nullptr;
      if (current != nullptr && current->is_bool() && current->get_bool()) {
        ++meta.current;
      }
    }
  }
  return meta;
}

// The last kLogTailLines lines of the file at `path`.
std::string LogTail(const std::string& path) {
  std::ifstream file(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(file, line)) {
    lines.push_back(std::move(line));
    if (lines.size() > 2 * kLogTailLines) {
      lines.erase(lines.begin(), lines.end() - kLogTailLines);
    }
  }
  if (lines.size() > kLogTailLines) {
    lines.erase(lines.begin(), lines.end() - kLogTailLines);
  }
  return absl::StrJoin(lines, "\n");
}

bool FileContains(const std::string& path, absl::string_view text) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return absl::StrContains(contents.str(), text);
}

}  // namespace

absl::StatusOr<std::unique_ptr<NatsServers>> NatsServers::Start(
    int nodes, const std::string& dir, const std::string& extra_config) {
  if (nodes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a NATS deployment needs a node, not ", nodes));
  }
  if (absl::StrContains(dir, "\"") || absl::StrContains(dir, "\\")) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot name ", dir, " in a nats-server configuration"));
  }
  const bool clustered = nodes > 1;
  absl::Status status;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    absl::StatusOr<std::vector<int>> ports =
        FreeLoopbackPorts(nodes * (clustered ? 3 : 2));
    if (!ports.ok()) return ports.status();
    std::vector<Node> layout(nodes);
    for (int i = 0; i < nodes; ++i) {
      Node& node = layout[i];
      node.name = absl::StrCat("node-", i);
      node.client_port = (*ports)[i];
      node.monitor_port = (*ports)[nodes + i];
      if (clustered) node.cluster_port = (*ports)[2 * nodes + i];
      node.config_path = absl::StrCat(dir, "/", node.name, ".conf");
      node.log_path = absl::StrCat(dir, "/", node.name, ".log");
    }
    std::unique_ptr<NatsServers> servers(new NatsServers(std::move(layout)));
    servers->extra_config_ = extra_config;

    // A new attempt starts from empty stores and logs: the log is where
    // the previous attempt's port clash was read.
    std::vector<int> all;
    for (int i = 0; i < nodes; ++i) {
      const Node& node = servers->nodes_[i];
      const std::string store_dir = absl::StrCat(dir, "/", node.name);
      std::error_code error;
      std::filesystem::remove_all(store_dir, error);
      std::filesystem::remove(node.log_path, error);
      if (!std::filesystem::create_directory(store_dir, error)) {
        return absl::UnavailableError(
            absl::StrCat("cannot create ", store_dir, ": ", error.message()));
      }
      if (absl::Status written = servers->WriteConfig(i, store_dir);
          !written.ok()) {
        return written;
      }
      all.push_back(i);
    }
    status = absl::OkStatus();
    for (int i = 0; i < nodes && status.ok(); ++i) status = servers->Spawn(i);
    if (status.ok()) status = servers->AwaitReady(all);
    if (status.ok()) return servers;

    bool port_taken = false;
    for (const Node& node : servers->nodes_) {
      port_taken =
          port_taken || FileContains(node.log_path, "address already in use");
    }
    if (!port_taken) return status;
  }
  return status;
}

NatsServers::~NatsServers() {
  for (int i = 0; i < nodes(); ++i) Kill(i);
}

std::string NatsServers::urls() const {
  std::vector<std::string> all;
  for (int i = 0; i < nodes(); ++i) all.push_back(url(i));
  return absl::StrJoin(all, ",");
}

std::string NatsServers::url(int node) const {
  return absl::StrCat("nats://127.0.0.1:", nodes_[node].client_port);
}

const std::string& NatsServers::server_name(int node) const {
  return nodes_[node].name;
}

int NatsServers::NodeNamed(const std::string& name) const {
  for (int i = 0; i < nodes(); ++i) {
    if (nodes_[i].name == name) return i;
  }
  return -1;
}

bool NatsServers::running(int node) const {
  const pid_t pid = nodes_[node].pid;
  if (pid == 0) return false;
  // WNOWAIT leaves an exited process to be reaped by Kill or Stop.
  siginfo_t info{};
  return waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == 0;
}

void NatsServers::Kill(int node) {
  const pid_t pid = nodes_[node].pid;
  if (pid == 0) return;
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  nodes_[node].pid = 0;
}

void NatsServers::Stop(int node) {
  const pid_t pid = nodes_[node].pid;
  if (pid == 0) return;
  kill(pid, SIGTERM);
  const absl::Time deadline = absl::Now() + kStopGrace;
  while (absl::Now() < deadline) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      nodes_[node].pid = 0;
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  Kill(node);
}

absl::Status NatsServers::Restart(int node) {
  Stop(node);
  if (absl::Status spawned = Spawn(node); !spawned.ok()) return spawned;
  absl::Status ready = AwaitReady({node});
  if (!ready.ok()) Kill(node);
  return ready;
}

absl::Status NatsServers::WriteConfig(int node,
                                      const std::string& store_dir) const {
  const Node& self = nodes_[node];
  std::string config = absl::Substitute(
      kNodeConfig, self.name, self.client_port, self.monitor_port, store_dir);
  if (self.cluster_port != 0) {
    std::vector<std::string> routes;
    for (const Node& other : nodes_) {
      if (&other == &self) continue;
      routes.push_back(
          absl::StrCat("\"nats-route://127.0.0.1:", other.cluster_port, "\""));
    }
    absl::SubstituteAndAppend(&config, kClusterConfig, kClusterName,
                              self.cluster_port, absl::StrJoin(routes, ", "));
  }
  absl::StrAppend(&config, extra_config_);

  std::ofstream file(self.config_path, std::ios::trunc);
  file << config;
  file.close();
  if (!file) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", self.config_path));
  }
  return absl::OkStatus();
}

absl::Status NatsServers::Spawn(int node) {
  Node& self = nodes_[node];
  if (access(kServerBinary, X_OK) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot run ", kServerBinary, ": ", std::strerror(errno),
                     " (scripts/install-deps.sh installs nats-server)"));
  }
  const int log_fd = open(self.log_path.c_str(),
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", self.log_path,
                                               ": ", std::strerror(errno)));
  }
  Descriptor log(log_fd);

  // Everything the child needs is prepared before fork: between fork and
  // exec a child of a multi-threaded process may only make system calls.
  std::string binary = kServerBinary;
  std::string config_flag = "-c";
  std::string config_path = self.config_path;
  char* argv[] = {binary.data(), config_flag.data(), config_path.data(),
                  nullptr};
  const std::string exec_failed =
      absl::StrCat("cannot execute ", kServerBinary, "\n");
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) {
    return absl::UnavailableError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // The server dies with the thread that started it; if that already
    // happened between fork and prctl, the parent is gone.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    // No inherited sockets: a client connection of the test that the
    // server held open would outlive the client.
    close_range(STDERR_FILENO + 1, ~0U, 0);
    sigset_t no_signals;
    sigemptyset(&no_signals);
    sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv);
    ssize_t ignored =
        write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
    (void)ignored;
    _exit(127);
  }
  self.pid = pid;
  return absl::OkStatus();
}

absl::Status NatsServers::AwaitReady(const std::vector<int>& which) {
  const bool clustered = nodes() > 1;
  const bool whole_cluster =
      clustered && static_cast<int>(which.size()) == nodes();
  const absl::Time deadline = absl::Now() + kReadyTimeout;
  for (;;) {
    // Why the deployment is not ready yet, and on which node.
    int waiting_on = -1;
    std::string reason;
    std::vector<MetaCluster> metas(nodes());
    for (int node : which) {
      if (!running(node)) {
        Kill(node);  // Reaps it.
        return NodeError(node, "exited");
      }
      if (waiting_on >= 0) continue;
      absl::StatusOr<HttpAnswer> health =
          HttpGet(nodes_[node].monitor_port, "/healthz");
      if (!health.ok() || health->status != 200) {
        waiting_on = node;
        reason = health.ok() ? absl::StrCat("/healthz answered ",
                                            health->status, ": ", health->body)
                             : std::string(health.status().message());
        continue;
      }
      if (!clustered) continue;
      absl::StatusOr<HttpAnswer> jsz =
          HttpGet(nodes_[node].monitor_port, "/jsz");
      absl::StatusOr<MetaCluster> meta =
          jsz.ok() ? ReadMetaCluster(jsz->body) : jsz.status();
      if (!meta.ok() || meta->leader.empty()) {
        waiting_on = node;
        reason = meta.ok() ? "/jsz names no meta leader"
                           : std::string(meta.status().message());
        continue;
      }
      metas[node] = *meta;
    }

    // The whole cluster is formed once all nodes follow one leader, which
    // sees each of the others as current.
    if (waiting_on < 0 && whole_cluster) {
      const std::string& leader = metas[0].leader;
      const int leader_node = NodeNamed(leader);
      for (int node = 0; node < nodes() && waiting_on < 0; ++node) {
        if (metas[node].leader != leader) {
          waiting_on = node;
          reason = absl::StrCat("meta leader ", metas[node].leader,
                                " where node-0 has ", leader);
        }
      }
      if (waiting_on < 0 &&
          (leader_node < 0 || metas[leader_node].current != nodes() - 1)) {
        waiting_on = leader_node < 0 ? 0 : leader_node;
        reason = absl::StrCat("meta leader ", leader, " has ",
                              leader_node < 0 ? 0 : metas[leader_node].current,
                              " current peers of ", nodes() - 1);
      }
    }

    if (waiting_on < 0) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return NodeError(
          waiting_on,
          absl::StrCat("not ready within ", absl::FormatDuration(kReadyTimeout),
                       " (", reason, ")"));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status NatsServers::NodeError(int node, const std::string& what) const {
  const Node& self = nodes_[node];
  return absl::UnavailableError(absl::StrCat(
      "nats-server ", self.name, " (", url(node), "): ", what,
      "; the last lines of ", self.log_path, ":\n", LogTail(self.log_path)));
}

}  // namespace fanout::testing

// Real nats-server processes with JetStream for tests: one standalone
// server, or a JetStream cluster whose nodes a test can kill, stop and
// restart, to check what a NATS backend does when its servers fail.

#ifndef FANOUT_TESTS_UTIL_NATS_SERVERS_H_
#define FANOUT_TESTS_UTIL_NATS_SERVERS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fanout::testing {

// Owns `nodes` nats-server child processes. Every server listens on
// 127.0.0.1 only, on ports picked when it is created; node i keeps its
// ports, its JetStream store under `dir`/node-i and its log file
// `dir`/node-i.log (stdout and stderr, appended across restarts) for the
// lifetime of this object.
//
// Not thread-safe: call from one thread. The processes are started with
// PR_SET_PDEATHSIG, so they are killed when the thread that started them
// (Start or Restart) ends, even if that thread's process dies without
// running destructors: start them from the test's own thread.
class NatsServers {
 public:
  // Starts `nodes` servers with JetStream and waits until JetStream is
  // usable on every one of them: for one node a standalone server; for
  // more, a cluster with routes between every pair, ready once every node
  // knows the same meta leader and that leader has every peer current (so
  // a stream with as many replicas as nodes can be created). `dir` must
  // exist. Picks free ports and tries again with others if a port was
  // taken meanwhile. Returns InvalidArgument if `nodes` < 1 or `dir` holds
  // a '"' or '\\', and otherwise Unavailable (with the tail of the failing
  // node's log) if a server cannot be started, exits, or is not ready
  // within 30 seconds; no process is left running then.
  // `extra_config` is added to every node's configuration file (e.g. a
  // tls block for its clients).
  static absl::StatusOr<std::unique_ptr<NatsServers>> Start(
      int nodes, const std::string& dir, const std::string& extra_config = "");

  // Kills and reaps every process still running.
  ~NatsServers();

  NatsServers(const NatsServers&) = delete;
  NatsServers& operator=(const NatsServers&) = delete;

  int nodes() const { return static_cast<int>(nodes_.size()); }

  // The client URLs of all nodes, comma-separated, as NATS clients take
  // a server list: "nats://127.0.0.1:P1,nats://127.0.0.1:P2,...".
  std::string urls() const;

  // For the functions below, REQUIRES: 0 <= node < nodes().

  // "nats://127.0.0.1:PORT", the client URL of `node`.
  std::string url(int node) const;

  // The server name of `node`, as JetStream reports it, for instance as
  // the leader of a stream's cluster.
  const std::string& server_name(int node) const;

  // The node whose server name is `name`, or -1.
  int NodeNamed(const std::string& name) const;

  // The process id of `node`, or 0 once it was killed or stopped.
  pid_t pid(int node) const { return nodes_[node].pid; }

  // Whether `node`'s process was started and has not exited (a process
  // that died by itself counts as not running).
  bool running(int node) const;

  // Sends SIGKILL to `node` and reaps it. Does nothing if it is not
  // running.
  void Kill(int node);

  // Sends SIGTERM to `node` and waits up to 10 seconds for it to exit,
  // then kills it; reaps it either way. Does nothing if it is not running.
  void Stop(int node);

  // Starts `node` again, stopping it first (as Stop) if it runs, on the
  // same ports with the same store, and waits until it serves again: its
  // health check passes, which in a cluster means it is current with the
  // meta leader and with the streams it holds. Returns Unavailable (with
  // the tail of its log) if it exits or is not ready within 30 seconds,
  // after killing it.
  absl::Status Restart(int node);

 private:
  struct Node {
    std::string name;
    int client_port = 0;
    int cluster_port = 0;  // 0 for a standalone server.
    int monitor_port = 0;
    std::string config_path;
    std::string log_path;
    pid_t pid = 0;
  };

  explicit NatsServers(std::vector<Node> nodes) : nodes_(std::move(nodes)) {}

  // Writes `node`'s configuration file with routes to every other node.
  absl::Status WriteConfig(int node, const std::string& store_dir) const;
  absl::Status Spawn(int node);
  // Waits until every node in `which` serves, as Start and Restart say.
  absl::Status AwaitReady(const std::vector<int>& which);
  absl::Status NodeError(int node, const std::string& what) const;

  std::vector<Node> nodes_;
  std::string extra_config_;
};

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_NATS_SERVERS_H_

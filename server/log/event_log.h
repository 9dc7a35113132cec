// The durable event log: every accepted delivery, in sequence order, in an
// embedded SQLite database (WAL mode). It assigns sequence numbers at commit,
// enforces one event per delivery id, and serves replays.
//
// On the ingest path it sits between conversion and the fan-out hub: an
// event reaches subscribers, and its sender gets a 2xx, only after the log
// committed it. Concurrent appends share commits (group commit) on one
// writer thread; a second thread checkpoints the write-ahead log into the
// database, so that commits do not wait for it. The schema is described in
// docs/event-log.md.

#ifndef FANOUT_SERVER_LOG_EVENT_LOG_H_
#define FANOUT_SERVER_LOG_EVENT_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/log/stored_event.h"
#include "staffify/fanout/v1/fanout.pb.h"

struct sqlite3;

namespace fanout {

enum class SyncPolicy {
  // fsync the WAL at checkpoints only (SQLite synchronous=NORMAL). An
  // acknowledged event survives the process crashing; an OS crash or power
  // loss can lose the last commits.
  kNormal,
  // fsync every commit (synchronous=FULL). Survives power loss too.
  kFull,
};

// The 64-bit hash by which the log finds a delivery id (FNV-1a of its
// bytes, then MurmurHash3's 64-bit finalizer). Stored in the log, so it must
// never change for a schema version.
uint64_t HashDeliveryId(absl::string_view id);

struct EventLogOptions {
  // Folder holding the database (created if missing).
  std::string data_dir = "data";
  SyncPolicy sync = SyncPolicy::kNormal;
  // Most appends one commit takes.
  size_t max_batch = 256;
  // Events older than this (by receipt time) are deleted. Zero keeps all.
  absl::Duration retention_age = absl::Hours(24 * 7);
  // Payload bytes kept at most; the oldest events go first. Zero: no limit.
  uint64_t retention_bytes = 0;
  // How often retention runs while the service runs.
  absl::Duration retention_interval = absl::Minutes(1);
  // The checkpointer copies the write-ahead log into the database once this
  // many bytes of it have not been copied yet.
  uint64_t checkpoint_bytes = 4 << 20;
  // Largest the write-ahead log may grow to. From three quarters of it on,
  // the checkpointer starts the WAL from its beginning again, holding
  // commits back while it copies what the last checkpoint left; at the
  // limit, commits wait until it has. The file is then cut back to this
  // size.
  uint64_t wal_max_bytes = 64 << 20;
  // For tests, to force hash collisions: replaces HashDeliveryId. A log must
  // be opened with the same function every time.
  std::function<uint64_t(absl::string_view)> id_hash;
};

// What an append did.
struct AppendResult {
  uint64_t sequence = 0;  // The event's sequence (the original's, if dup).
  bool duplicate = false;
  // For a duplicate: whether its body differed from the stored one.
  bool differs = false;
  // For a duplicate whose body differed: the stored event's type and
  // conversion problems, which describe what was kept.
  std::string stored_event_type;
  std::vector<staffify::fanout::v1::ConversionProblem> stored_problems;
};

// The sequences a log holds: first..last, or none when empty (first = last
// + 1). `last` never decreases, even when retention empties the log.
struct LogRange {
  uint64_t first = 1;
  uint64_t last = 0;
};

class EventLog {
 public:
  // Called on the writer thread after each commit, with the new events in
  // sequence order (duplicates excluded). Must not block for long.
  using CommitListener = std::function<void(
      const std::vector<std::shared_ptr<const StoredEvent>>&)>;
  using AppendDone = std::function<void(absl::StatusOr<AppendResult>)>;

  // Opens (creating if needed) the log in options.data_dir and starts its
  // writer thread. Returns Unavailable/Internal naming the file and SQLite's
  // message on failure.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(
      EventLogOptions options, CommitListener listener);

  // Finishes pending appends, stops the writer and closes the database.
  ~EventLog();

  // Queues `event` (sequence unset). `done` runs on the writer thread once
  // the commit holding it is durable per the sync policy: with the assigned
  // sequence, or the original's for a delivery id already in the log; or
  // with Unavailable if the log failed or is closing, in which case the
  // event was not stored. Thread-safe.
  void Append(staffify::fanout::v1::Event event, AppendDone done);

  // Reads up to `limit` events with sequence > `after`, in order, stopping
  // early once they take `limit_bytes` stored bytes (at least one is read).
  // Events
  // whose type `matches` rejects are skipped without counting toward
  // `limit`, but `*scanned_through` is set to the last sequence examined so
  // the caller can move past them. Thread-safe; does not block appends.
  absl::Status Read(
      uint64_t after, size_t limit, size_t limit_bytes,
      const std::function<bool(const std::string& event_type)>& matches,
      std::vector<std::shared_ptr<const StoredEvent>>* out,
      uint64_t* scanned_through);

  // The first sequence received at or after `time`, or range().last + 1.
  absl::StatusOr<uint64_t> FirstSequenceSince(absl::Time time);

  LogRange range() const;

  // Deletes events beyond the retention limits now. Runs on its own every
  // retention_interval. Thread-safe.
  absl::Status EnforceRetention(absl::Time now);

  // Statistics for operators and tests.
  uint64_t duplicates() const { return duplicates_.load(); }
  uint64_t differing_duplicates() const { return differing_duplicates_.load(); }
  uint64_t commits() const { return commits_.load(); }
  // Checkpoints run, and those of them that restarted the write-ahead log
  // because it reached wal_max_bytes.
  uint64_t checkpoints() const { return checkpoints_.load(); }
  uint64_t wal_restarts() const { return wal_restarts_.load(); }

 private:
  struct Pending {
    staffify::fanout::v1::Event event;
    AppendDone done;
  };
  class Database;

  EventLog(EventLogOptions options, CommitListener listener);

  absl::Status Init();
  // Creates the tables in a new database, or upgrades an older schema.
  absl::Status CreateOrUpgradeSchema();
  uint64_t IdHash(absl::string_view id) const {
    return options_.id_hash ? options_.id_hash(id) : HashDeliveryId(id);
  }
  void WriterLoop();
  // Copies the write-ahead log into the database when the writer asks for
  // it, on checkpointer_.
  void CheckpointLoop();
  // Called by SQLite on the writer thread after each commit, with the
  // number of frames in the write-ahead log.
  static int OnWalCommit(void* log, sqlite3* db, const char* name, int frames);
  // Returns once the write-ahead log is below its limit, or restarting.
  void AwaitWalRoom();
  // Commits `batch` in one transaction and completes its appends.
  void CommitBatch(std::vector<Pending>* batch);

  const EventLogOptions options_;
  const CommitListener listener_;

  // Serialises appends and retention on the writer connection.
  absl::Mutex writer_mu_;
  std::unique_ptr<Database> writer_db_ ABSL_GUARDED_BY(writer_mu_);
  absl::Mutex reader_mu_;
  std::unique_ptr<Database> reader_db_ ABSL_GUARDED_BY(reader_mu_);

  mutable absl::Mutex mu_;
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  LogRange range_ ABSL_GUARDED_BY(mu_);
  uint64_t retained_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Receipt time (Unix microseconds) of the newest event stored, and of the
  // newest event removed by retention.
  int64_t last_received_us_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t trimmed_received_us_ ABSL_GUARDED_BY(mu_) = INT64_MIN;
  absl::Time next_retention_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  std::atomic<uint64_t> duplicates_{0};
  std::atomic<uint64_t> differing_duplicates_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> checkpoints_{0};
  std::atomic<uint64_t> wal_restarts_{0};

  // The checkpointer's own connection, used on its thread only.
  std::unique_ptr<Database> checkpoint_db_;
  // Write-ahead log frames that start a checkpoint, that make it restart
  // the WAL, and that hold the writer back until it has.
  int checkpoint_frames_ = 0;
  int restart_wal_frames_ = 0;
  int max_wal_frames_ = 0;
  absl::Mutex checkpoint_mu_;
  // Frames in the write-ahead log after the last commit, and how many of
  // them the last checkpoint copied.
  int wal_frames_ ABSL_GUARDED_BY(checkpoint_mu_) = 0;
  int backfilled_frames_ ABSL_GUARDED_BY(checkpoint_mu_) = 0;
  bool checkpoint_due_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  // The WAL reached max_wal_frames_: the writer waits until the
  // checkpointer has copied all of it, so that the next commit restarts it.
  // Only when the checkpointer falls behind: it restarts the WAL from
  // restart_wal_frames_ on.
  bool wal_full_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  bool checkpoint_stopping_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  std::thread checkpointer_;

  std::thread writer_;
  int lock_fd_ = -1;  // Holds the data directory's LOCK file.
};

}  // namespace fanout

#endif  // FANOUT_SERVER_LOG_EVENT_LOG_H_

#include "server/log/event_log.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "spdlog/spdlog.h"

namespace fanout {

using staffify::fanout::v1::Event;

namespace {

constexpr int kSchemaVersion = 2;

// Deliveries are found by a 64-bit hash of their id (id_hash), confirmed by
// the id itself: an index of small integers is cheaper to keep than one of
// the ids' text, into which every insert lands at a random place.
constexpr const char* kSchema = R"sql(
CREATE TABLE events (
  sequence       INTEGER PRIMARY KEY,
  id_hash        INTEGER NOT NULL,
  delivery_id    TEXT    NOT NULL,
  event_type     TEXT    NOT NULL,
  received_at_us INTEGER NOT NULL,
  event          BLOB    NOT NULL
);
CREATE INDEX events_by_id_hash ON events (id_hash);
CREATE INDEX events_by_received_at ON events (received_at_us);
CREATE TABLE meta (
  key   TEXT    PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES
  ('schema_version', 2),
  ('last_sequence', 0),
  ('trimmed_through', 0),
  ('trimmed_received_at_us', -9223372036854775808);
)sql";

// From version 1, whose events table had `delivery_id TEXT UNIQUE` and no
// id_hash. SQLite cannot drop a UNIQUE constraint, so the table is copied.
constexpr const char* kUpgradeFrom1 = R"sql(
CREATE TABLE events_v2 (
  sequence       INTEGER PRIMARY KEY,
  id_hash        INTEGER NOT NULL,
  delivery_id    TEXT    NOT NULL,
  event_type     TEXT    NOT NULL,
  received_at_us INTEGER NOT NULL,
  event          BLOB    NOT NULL
);
INSERT INTO events_v2
  SELECT sequence, fanout_id_hash(delivery_id), delivery_id, event_type,
         received_at_us, event
  FROM events ORDER BY sequence;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
CREATE INDEX events_by_id_hash ON events (id_hash);
CREATE INDEX events_by_received_at ON events (received_at_us);
UPDATE meta SET value = 2 WHERE key = 'schema_version';
)sql";

int64_t ToMicros(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000000 + t.nanos() / 1000;
}

// How long a connection waits for a lock another one holds (a checkpoint
// restarting the write-ahead log) before the statement fails.
constexpr absl::Duration kBusyTimeout = absl::Seconds(10);

// Size of a write-ahead log frame beyond its page.
constexpr int64_t kWalFrameHeaderBytes = 24;

}  // namespace

uint64_t HashDeliveryId(absl::string_view id) {
  uint64_t hash = 0xcbf29ce484222325u;
  for (const char c : id) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3u;
  }
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdu;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53u;
  hash ^= hash >> 33;
  return hash;
}

// One SQLite connection and the statements prepared on it.
class EventLog::Database {
 public:
  ~Database() {
    for (sqlite3_stmt* statement : statements_) sqlite3_finalize(statement);
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  absl::Status Open(const std::string& path, SyncPolicy sync) {
    path_ = path;
    const int rc = sqlite3_open_v2(
        path.c_str(), &db_,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
        nullptr);
    if (rc != SQLITE_OK) return Error("open", rc);
    sqlite3_busy_handler(db_, &Database::OnBusy, this);
    absl::Status status = Exec("PRAGMA journal_mode=WAL");
    if (status.ok()) {
      status = Exec(sync == SyncPolicy::kFull ? "PRAGMA synchronous=FULL"
                                              : "PRAGMA synchronous=NORMAL");
    }
    // Checkpoints run on a thread of their own (EventLog::CheckpointLoop),
    // never inside a commit.
    if (status.ok()) status = Exec("PRAGMA wal_autocheckpoint=0");
    return status;
  }

  // The value of the first column of the first row of `sql`.
  absl::StatusOr<int64_t> QueryInt(const char* sql) {
    sqlite3_stmt* s = Prepare(sql);
    if (s == nullptr) return Error("prepare", SQLITE_ERROR);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      sqlite3_reset(s);
      return Error(sql, rc);
    }
    const int64_t value = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return value;
  }

  absl::Status Exec(const char* sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return absl::OkStatus();
    std::string text = message ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    return absl::UnavailableError(
        absl::StrCat("event log ", path_, ": ", text));
  }

  // Returns a statement for `sql`, prepared once and reset for reuse.
  sqlite3_stmt* Prepare(const char* sql) {
    for (size_t i = 0; i < sqls_.size(); ++i) {
      if (sqls_[i] == sql) {
        sqlite3_reset(statements_[i]);
        sqlite3_clear_bindings(statements_[i]);
        return statements_[i];
      }
    }
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement,
                           nullptr) != SQLITE_OK) {
      spdlog::error("event log cannot prepare a statement path={} error={:?}",
                    path_, std::string(sqlite3_errmsg(db_)));
      return nullptr;
    }
    sqls_.push_back(sql);
    statements_.push_back(statement);
    return statement;
  }

  absl::Status Error(const char* what, int rc) const {
    return absl::UnavailableError(absl::StrCat(
        "event log ", path_, ": ", what, ": ",
        db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)));
  }

  // Reads meta.value for `key`.
  absl::StatusOr<int64_t> Meta(const char* key) {
    sqlite3_stmt* s = Prepare("SELECT value FROM meta WHERE key = ?1");
    if (s == nullptr) return Error("prepare", SQLITE_ERROR);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_ROW) return Error("read meta", SQLITE_ERROR);
    const int64_t value = sqlite3_column_int64(s, 0);
    // A statement left unfinished keeps its read transaction open for as
    // long as the connection lives, and the WAL then can never be
    // checkpointed: it would grow without bound.
    sqlite3_reset(s);
    return value;
  }

  absl::Status SetMeta(const char* key, int64_t value) {
    sqlite3_stmt* s = Prepare("UPDATE meta SET value = ?2 WHERE key = ?1");
    if (s == nullptr) return Error("prepare", SQLITE_ERROR);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, value);
    const int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? absl::OkStatus() : Error("write meta", rc);
  }

  sqlite3* db() { return db_; }
  const std::string& path() const { return path_; }

 private:
  // Waits for a lock in short steps: SQLite's own busy timeout sleeps a
  // millisecond or more at a time, far longer than a commit takes.
  static int OnBusy(void* arg, int attempt) {
    Database* self = static_cast<Database*>(arg);
    const absl::Time now = absl::Now();
    if (attempt == 0) self->busy_since_ = now;
    if (now - self->busy_since_ >= kBusyTimeout) return 0;
    absl::SleepFor(std::min(absl::Microseconds(50) * (attempt + 1),
                            absl::Milliseconds(1)));
    return 1;
  }

  std::string path_;
  absl::Time busy_since_;
  sqlite3* db_ = nullptr;
  std::vector<const char*> sqls_;
  std::vector<sqlite3_stmt*> statements_;
};

EventLog::EventLog(EventLogOptions options, CommitListener listener)
    : options_(std::move(options)), listener_(std::move(listener)) {}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(
    EventLogOptions options, CommitListener listener) {
  std::unique_ptr<EventLog> log(
      new EventLog(std::move(options), std::move(listener)));
  if (absl::Status status = log->Init(); !status.ok()) return status;
  log->writer_ = std::thread([log = log.get()] { log->WriterLoop(); });
  log->checkpointer_ =
      std::thread([log = log.get()] { log->CheckpointLoop(); });
  return log;
}

absl::Status EventLog::Init() {
  if (mkdir(options_.data_dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat("cannot create data directory ",
                                               options_.data_dir, ": ",
                                               std::strerror(errno)));
  }
  // One process per data directory: a second writer would fight the first
  // over sequence numbers. The lock goes with the process, even on kill -9.
  const std::string lock_path = options_.data_dir + "/LOCK";
  lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", options_.data_dir, " is in use by another process (",
        lock_path, " is locked)"));
  }
  const std::string path = options_.data_dir + "/events.db";

  writer_db_ = std::make_unique<Database>();
  absl::Status status = writer_db_->Open(path, options_.sync);
  if (status.ok()) status = CreateOrUpgradeSchema();
  if (!status.ok()) return status;

  absl::StatusOr<int64_t> last = writer_db_->Meta("last_sequence");
  absl::StatusOr<int64_t> trimmed_received =
      writer_db_->Meta("trimmed_received_at_us");
  if (!last.ok()) return last.status();
  if (!trimmed_received.ok()) return trimmed_received.status();

  sqlite3_stmt* s = writer_db_->Prepare(
      "SELECT MIN(sequence), COALESCE(SUM(length(event)), 0),"
      " COALESCE(MAX(received_at_us), 0) FROM events");
  if (s == nullptr || sqlite3_step(s) != SQLITE_ROW) {
    return writer_db_->Error("scan", SQLITE_ERROR);
  }
  {
    absl::MutexLock lock(&mu_);
    range_.last = static_cast<uint64_t>(*last);
    range_.first = sqlite3_column_type(s, 0) == SQLITE_NULL
                       ? range_.last + 1
                       : static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    retained_bytes_ = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
    // Retention may have deleted the newest events; receipt times must not
    // go back past theirs either, or FirstSequenceSince would call events
    // received after a restart "no longer retained".
    last_received_us_ =
        std::max<int64_t>(sqlite3_column_int64(s, 2), *trimmed_received);
    trimmed_received_us_ = *trimmed_received;
    spdlog::info("event log opened path={} first_seq={} last_seq={} bytes={}",
                 path, range_.first, range_.last, retained_bytes_);
  }
  sqlite3_reset(s);

  // The writer reports the size of the write-ahead log after each commit
  // (OnWalCommit); the checkpointer copies it into the database on its own
  // connection. After the checkpointer has restarted the WAL, the writer
  // cuts the file back to wal_max_bytes.
  absl::StatusOr<int64_t> page_bytes = writer_db_->QueryInt("PRAGMA page_size");
  if (!page_bytes.ok()) return page_bytes.status();
  const int64_t frame_bytes = *page_bytes + kWalFrameHeaderBytes;
  checkpoint_frames_ = static_cast<int>(std::clamp<int64_t>(
      static_cast<int64_t>(options_.checkpoint_bytes) / frame_bytes, 1,
      INT32_MAX));
  max_wal_frames_ = static_cast<int>(std::clamp<int64_t>(
      static_cast<int64_t>(options_.wal_max_bytes) / frame_bytes,
      checkpoint_frames_, INT32_MAX));
  restart_wal_frames_ = std::max(max_wal_frames_ / 4 * 3, 1);
  status = writer_db_->Exec(
      absl::StrCat("PRAGMA journal_size_limit=", options_.wal_max_bytes)
          .c_str());
  if (!status.ok()) return status;
  sqlite3_wal_hook(writer_db_->db(), &EventLog::OnWalCommit, this);

  checkpoint_db_ = std::make_unique<Database>();
  status = checkpoint_db_->Open(path, options_.sync);
  if (!status.ok()) return status;
  reader_db_ = std::make_unique<Database>();
  return reader_db_->Open(path, options_.sync);
}

absl::Status EventLog::CreateOrUpgradeSchema() {
  Database& db = *writer_db_;
  // The upgrade computes id_hash in SQL.
  const int rc = sqlite3_create_function_v2(
      db.db(), "fanout_id_hash", 1,
      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, this,
      [](sqlite3_context* context, int, sqlite3_value** args) {
        const auto* log =
            static_cast<const EventLog*>(sqlite3_user_data(context));
        const absl::string_view id(
            reinterpret_cast<const char*>(sqlite3_value_text(args[0])),
            static_cast<size_t>(sqlite3_value_bytes(args[0])));
        sqlite3_result_int64(context, static_cast<int64_t>(log->IdHash(id)));
      },
      nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return db.Error("register fanout_id_hash", rc);

  // One transaction: a crash leaves either the old schema or the new.
  absl::Status status = db.Exec("BEGIN IMMEDIATE");
  if (!status.ok()) return status;
  absl::StatusOr<int64_t> tables = db.QueryInt(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
      " name IN ('events', 'meta')");
  if (!tables.ok()) {
    status = tables.status();
  } else if (*tables == 0) {
    status = db.Exec(kSchema);
  } else {
    absl::StatusOr<int64_t> version = db.Meta("schema_version");
    if (!version.ok()) {
      status = version.status();
    } else if (*version == 1) {
      absl::StatusOr<int64_t> events =
          db.QueryInt("SELECT count(*) FROM events");
      spdlog::info(
          "event log {}: upgrading schema version 1 to {} ({} events)...",
          db.path(), kSchemaVersion, events.ok() ? *events : -1);
      status = db.Exec(kUpgradeFrom1);
      if (status.ok()) spdlog::info("event log {}: upgraded", db.path());
    } else if (*version != kSchemaVersion) {
      status = absl::FailedPreconditionError(absl::StrCat(
          "event log ", db.path(), " has schema version ", *version,
          "; this build reads versions 1 (upgrading it) and ", kSchemaVersion));
    }
  }
  if (status.ok()) status = db.Exec("COMMIT");
  if (!status.ok()) db.Exec("ROLLBACK").IgnoreError();
  return status;
}

int EventLog::OnWalCommit(void* arg, sqlite3*, const char*, int frames) {
  EventLog* log = static_cast<EventLog*>(arg);
  absl::MutexLock lock(&log->checkpoint_mu_);
  // Fewer frames than were copied: the WAL has started from the beginning.
  if (frames < log->backfilled_frames_) log->backfilled_frames_ = 0;
  log->wal_frames_ = frames;
  if (frames - log->backfilled_frames_ >= log->checkpoint_frames_ ||
      frames >= log->restart_wal_frames_) {
    log->checkpoint_due_ = true;
  }
  if (frames >= log->max_wal_frames_) log->wal_full_ = true;
  return SQLITE_OK;
}

void EventLog::CheckpointLoop() {
  sqlite3* db = checkpoint_db_->db();
  absl::Time next_failure_warning = absl::InfinitePast();
  for (;;) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      const auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoint_mu_) {
        return checkpoint_due_ || checkpoint_stopping_;
      };
      checkpoint_mu_.Await(absl::Condition(&due));
      if (checkpoint_stopping_) return;
      checkpoint_due_ = false;
    }

    // A passive checkpoint copies what is committed without holding up the
    // writer. Under steady load it never finishes with the WAL all copied,
    // so the WAL could not start over and would grow for ever. So once the
    // WAL is large, a restart follows: it takes the write lock (commits
    // wait), waits for readers to let go, copies the few frames committed
    // since the passive pass, and makes the next commit start the WAL
    // afresh. Should the checkpointer fall behind, the writer itself stops
    // at the limit (AwaitWalRoom).
    int wal_frames = 0;
    int copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                       &wal_frames, &copied);
    if (rc == SQLITE_OK && wal_frames >= restart_wal_frames_) {
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART,
                                     &wal_frames, &copied);
      if (rc == SQLITE_OK) wal_restarts_.fetch_add(1);
    }
    checkpoints_.fetch_add(1);
    if (rc != SQLITE_OK && absl::Now() >= next_failure_warning) {
      // The writer goes on; the next commit asks again.
      spdlog::warn("event log checkpoint failed: {}", sqlite3_errmsg(db));
      next_failure_warning = absl::Now() + absl::Seconds(10);
    }

    absl::MutexLock lock(&checkpoint_mu_);
    wal_full_ = false;
    if (rc != SQLITE_OK) continue;
    if (copied > 0 && copied <= wal_frames_) backfilled_frames_ = copied;
    if (wal_frames_ - backfilled_frames_ >= checkpoint_frames_) {
      checkpoint_due_ = true;
    }
  }
}

void EventLog::AwaitWalRoom() {
  absl::MutexLock lock(&checkpoint_mu_);
  const auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoint_mu_) {
    return !wal_full_ || checkpoint_stopping_;
  };
  checkpoint_mu_.Await(absl::Condition(&room));
}

EventLog::~EventLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  {
    absl::MutexLock lock(&checkpoint_mu_);
    checkpoint_stopping_ = true;
  }
  if (checkpointer_.joinable()) checkpointer_.join();
  if (lock_fd_ >= 0) close(lock_fd_);
}

void EventLog::Append(Event event, AppendDone done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back({std::move(event), std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("event log is closing"));
}

void EventLog::WriterLoop() {
  std::vector<Pending> batch;
  for (;;) {
    bool retention_due = false;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready),
                           options_.retention_interval);
      if (queue_.empty() && stopping_) break;
      const size_t take = std::min(queue_.size(), options_.max_batch);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + take));
      queue_.erase(queue_.begin(), queue_.begin() + take);
      retention_due = absl::Now() >= next_retention_;
    }
    if (!batch.empty()) CommitBatch(&batch);
    batch.clear();
    if (retention_due) {
      absl::Status status = EnforceRetention(absl::Now());
      if (!status.ok())
        spdlog::error("retention failed error={:?}", status.ToString());
    }
  }
}

void EventLog::CommitBatch(std::vector<Pending>* batch) {
  AwaitWalRoom();
  absl::MutexLock writer_lock(&writer_mu_);
  Database& db = *writer_db_;

  uint64_t last;
  int64_t last_received_us;
  {
    absl::MutexLock lock(&mu_);
    last = range_.last;
    last_received_us = last_received_us_;
  }

  std::vector<absl::StatusOr<AppendResult>> results;
  std::vector<std::shared_ptr<const StoredEvent>> committed;
  uint64_t added_bytes = 0;
  absl::Status status = db.Exec("BEGIN IMMEDIATE");
  for (Pending& pending : *batch) {
    if (!status.ok()) break;
    Event& event = pending.event;

    // Receipt times never go backwards in sequence order, so that a
    // position in time maps to one position in the log.
    int64_t received_us = ToMicros(event.received_at());
    if (received_us < last_received_us) {
      received_us = last_received_us;
      event.mutable_received_at()->set_seconds(received_us / 1000000);
      event.mutable_received_at()->set_nanos(received_us % 1000000 * 1000);
    }
    // A delivery id already in the log (including earlier in this batch)
    // is a retry of a delivery already kept.
    const int64_t id_hash = static_cast<int64_t>(IdHash(event.id()));
    sqlite3_stmt* lookup = db.Prepare(
        "SELECT sequence, delivery_id, event FROM events WHERE id_hash = ?1");
    if (lookup == nullptr) {
      status = db.Error("prepare lookup", SQLITE_ERROR);
      break;
    }
    sqlite3_bind_int64(lookup, 1, id_hash);
    int rc;
    bool duplicate = false;
    while ((rc = sqlite3_step(lookup)) == SQLITE_ROW) {
      const absl::string_view stored_id(
          reinterpret_cast<const char*>(sqlite3_column_text(lookup, 1)),
          static_cast<size_t>(sqlite3_column_bytes(lookup, 1)));
      if (stored_id != event.id()) continue;  // Another id, same hash.
      AppendResult result;
      result.duplicate = true;
      result.sequence = static_cast<uint64_t>(sqlite3_column_int64(lookup, 0));
      Event original;
      original.ParseFromArray(sqlite3_column_blob(lookup, 2),
                              sqlite3_column_bytes(lookup, 2));
      result.differs = original.raw_body() != event.raw_body();
      if (result.differs) {
        result.stored_event_type = original.event_type();
        result.stored_problems.assign(original.conversion_problems().begin(),
                                      original.conversion_problems().end());
      }
      results.push_back(result);
      duplicate = true;
      break;
    }
    sqlite3_reset(lookup);  // Or its read would outlive the commit (see Meta).
    if (!duplicate && rc != SQLITE_DONE) {
      status = db.Error("look up delivery id", rc);
      break;
    }
    if (duplicate) continue;

    event.set_sequence(last + 1);
    std::string blob = event.SerializeAsString();
    sqlite3_stmt* insert = db.Prepare(
        "INSERT INTO events (sequence, id_hash, delivery_id, event_type,"
        " received_at_us, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (insert == nullptr) {
      status = db.Error("prepare insert", SQLITE_ERROR);
      break;
    }
    sqlite3_bind_int64(insert, 1, static_cast<int64_t>(last + 1));
    sqlite3_bind_int64(insert, 2, id_hash);
    sqlite3_bind_text(insert, 3, event.id().data(),
                      static_cast<int>(event.id().size()), SQLITE_STATIC);
    sqlite3_bind_text(insert, 4, event.event_type().data(),
                      static_cast<int>(event.event_type().size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(insert, 5, received_us);
    sqlite3_bind_blob(insert, 6, blob.data(), static_cast<int>(blob.size()),
                      SQLITE_STATIC);
    rc = sqlite3_step(insert);
    if (rc != SQLITE_DONE) {
      status = db.Error("insert", rc);
      break;
    }

    ++last;
    last_received_us = received_us;
    added_bytes += blob.size();
    AppendResult result;
    result.sequence = last;
    results.push_back(result);
    // The bytes just stored are the bytes every subscriber is sent.
    committed.push_back(std::make_shared<const StoredEvent>(
        last, std::move(*event.mutable_event_type()), std::move(blob)));
  }
  if (status.ok()) status = db.SetMeta("last_sequence", last);
  if (status.ok()) status = db.Exec("COMMIT");

  if (!status.ok()) {
    db.Exec("ROLLBACK").IgnoreError();
    spdlog::error(
        "event log commit failed deliveries={} first_delivery={:?} "
        "last_delivery={:?} error={:?}",
        batch->size(), batch->front().event.id(), batch->back().event.id(),
        status.ToString());
    for (Pending& pending : *batch) pending.done(status);
    return;
  }

  commits_.fetch_add(1);
  {
    absl::MutexLock lock(&mu_);
    if (range_.first == range_.last + 1 && !committed.empty()) {
      range_.first = committed.front()->sequence();
    }
    range_.last = last;
    last_received_us_ = last_received_us;
    retained_bytes_ += added_bytes;
  }
  // Subscribers learn of the events before their senders get an answer, so
  // a sender that subscribes after its 2xx cannot miss its own event.
  if (!committed.empty() && listener_) listener_(committed);
  for (size_t i = 0; i < batch->size(); ++i) {
    if (results[i]->duplicate) {
      duplicates_.fetch_add(1);
      if (results[i]->differs) differing_duplicates_.fetch_add(1);
    }
    (*batch)[i].done(std::move(results[i]));
  }
}

absl::Status EventLog::Read(
    uint64_t after, size_t limit, size_t limit_bytes,
    const std::function<bool(const std::string& event_type)>& matches,
    std::vector<std::shared_ptr<const StoredEvent>>* out,
    uint64_t* scanned_through) {
  constexpr int kChunk = 512;
  *scanned_through = after;
  absl::MutexLock lock(&reader_mu_);
  Database& db = *reader_db_;
  sqlite3_stmt* s = db.Prepare(
      "SELECT sequence, event_type, event FROM events WHERE sequence > ?1"
      " ORDER BY sequence LIMIT ?2");
  if (s == nullptr) return db.Error("prepare read", SQLITE_ERROR);

  // Scans in chunks until `limit` events matched or the log ends; the read
  // transaction of each chunk sees a consistent snapshot.
  size_t bytes = 0;
  // At least one event is read, whatever its size.
  const auto full = [&] {
    return out->size() >= limit || (!out->empty() && bytes >= limit_bytes);
  };
  while (!full()) {
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, static_cast<int64_t>(*scanned_through));
    sqlite3_bind_int(s, 2, kChunk);
    int rows = 0;
    int rc;
    while (!full() && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      ++rows;
      *scanned_through = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
      std::string type(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)),
                       sqlite3_column_bytes(s, 1));
      if (!matches(type)) continue;
      // The stored bytes are sent as they are; that they are a well-formed
      // message is checked here, without building one.
      const char* blob = static_cast<const char*>(sqlite3_column_blob(s, 2));
      const int blob_bytes = sqlite3_column_bytes(s, 2);
      google::protobuf::io::CodedInputStream input(
          reinterpret_cast<const uint8_t*>(blob), blob_bytes);
      if (!google::protobuf::internal::WireFormatLite::SkipMessage(&input) ||
          !input.ConsumedEntireMessage()) {
        sqlite3_reset(s);
        return absl::DataLossError(absl::StrCat(
            "event log: stored event ", *scanned_through, " is corrupt"));
      }
      bytes += static_cast<size_t>(blob_bytes);
      out->push_back(std::make_shared<const StoredEvent>(
          *scanned_through, std::move(type),
          std::string(blob, static_cast<size_t>(blob_bytes))));
    }
    if (full()) break;
    if (rc != SQLITE_DONE) {
      sqlite3_reset(s);
      return db.Error("read", rc);
    }
    if (rows < kChunk) break;
  }
  sqlite3_reset(s);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> EventLog::FirstSequenceSince(absl::Time time) {
  const int64_t micros = absl::ToUnixMicros(time);
  {
    absl::MutexLock lock(&mu_);
    if (micros <= trimmed_received_us_) {
      return absl::OutOfRangeError(
          absl::StrCat("events received at ", absl::FormatTime(time),
                       " are no longer retained; the oldest retained is seq ",
                       range_.first));
    }
  }
  // Read before the query, whose snapshot then holds every event through
  // `last`: taken after it, `last` could include events committed since
  // the snapshot, received at or after `time`, which the answer would skip.
  const uint64_t last = range().last;
  absl::MutexLock lock(&reader_mu_);
  Database& db = *reader_db_;
  sqlite3_stmt* s = db.Prepare(
      "SELECT sequence FROM events WHERE received_at_us >= ?1"
      " ORDER BY received_at_us, sequence LIMIT 1");
  if (s == nullptr) return db.Error("prepare", SQLITE_ERROR);
  sqlite3_bind_int64(s, 1, micros);
  const int rc = sqlite3_step(s);
  uint64_t sequence;
  if (rc == SQLITE_ROW) {
    sequence = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
  } else if (rc == SQLITE_DONE) {
    sequence = last + 1;
  } else {
    sqlite3_reset(s);
    return db.Error("find time", rc);
  }
  sqlite3_reset(s);
  return sequence;
}

LogRange EventLog::range() const {
  absl::MutexLock lock(&mu_);
  return range_;
}

absl::Status EventLog::EnforceRetention(absl::Time now) {
  absl::MutexLock writer_lock(&writer_mu_);
  Database& db = *writer_db_;
  const int64_t cutoff_us =
      options_.retention_age > absl::ZeroDuration()
          ? absl::ToUnixMicros(now - options_.retention_age)
          : INT64_MIN;
  {
    absl::MutexLock lock(&mu_);
    next_retention_ = now + options_.retention_interval;
  }

  // Walks from the oldest event, a chunk per transaction so that appends
  // are never held up for long, and deletes a prefix of the log: events
  // older than the cutoff, then as many as the size limit requires.
  for (;;) {
    uint64_t retained;
    {
      absl::MutexLock lock(&mu_);
      retained = retained_bytes_;
    }
    sqlite3_stmt* s = db.Prepare(
        "SELECT sequence, received_at_us, length(event) FROM events"
        " ORDER BY sequence LIMIT 1024");
    if (s == nullptr) return db.Error("prepare retention", SQLITE_ERROR);
    int64_t through = -1;
    int64_t through_received = 0;
    uint64_t freed = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const int64_t received = sqlite3_column_int64(s, 1);
      const bool too_old = received < cutoff_us;
      const bool too_big = options_.retention_bytes > 0 &&
                           retained - freed > options_.retention_bytes;
      if (!too_old && !too_big) break;
      through = sqlite3_column_int64(s, 0);
      through_received = received;
      freed += static_cast<uint64_t>(sqlite3_column_int64(s, 2));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db.Error("scan", rc);
    if (through < 0) return absl::OkStatus();

    AwaitWalRoom();
    absl::Status status = db.Exec("BEGIN IMMEDIATE");
    sqlite3_stmt* del = db.Prepare("DELETE FROM events WHERE sequence <= ?1");
    if (status.ok() && del == nullptr) {
      status = db.Error("prepare delete", SQLITE_ERROR);
    }
    if (status.ok()) {
      sqlite3_bind_int64(del, 1, through);
      rc = sqlite3_step(del);
      if (rc != SQLITE_DONE) status = db.Error("delete", rc);
    }
    if (status.ok()) status = db.SetMeta("trimmed_through", through);
    if (status.ok()) {
      status = db.SetMeta("trimmed_received_at_us", through_received);
    }
    if (status.ok()) status = db.Exec("COMMIT");
    if (!status.ok()) {
      db.Exec("ROLLBACK").IgnoreError();
      return status;
    }
    {
      absl::MutexLock lock(&mu_);
      range_.first = static_cast<uint64_t>(through) + 1;
      retained_bytes_ -= std::min(retained_bytes_, freed);
      trimmed_received_us_ = through_received;
    }
    spdlog::info("retention removed events through_seq={} bytes={}", through,
                 freed);
  }
}

}  // namespace fanout

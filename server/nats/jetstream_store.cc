#include "server/nats/jetstream_store.h"

#include <nats/nats.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/auth/protected_file.h"
#include "server/auth/tls_files.h"
#include "server/convert/event_converter.h"
#include "server/nats/subjects.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

using google::protobuf::internal::WireFormatLite;
using staffify::fanout::v1::Event;

int64_t Millis(absl::Duration duration) {
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(duration));
}

// Options for one JetStream request: wait up to `timeout` for its answer.
jsOptions RequestOptions(absl::Duration timeout) {
  jsOptions options;
  jsOptions_Init(&options);
  options.Wait = Millis(timeout);
  return options;
}

// `what` failed with `status`: the error, with cnats' own description of
// the thread's last error and JetStream's error code when there is one.
absl::Status NatsError(absl::string_view what, natsStatus status,
                       jsErrCode code = static_cast<jsErrCode>(0)) {
  const char* detail = nats_GetLastError(nullptr);
  std::string message = absl::StrCat(what, ": ", natsStatus_GetText(status));
  if (detail != nullptr && *detail != '\0') {
    absl::StrAppend(&message, " (", detail, ")");
  }
  if (code != 0) absl::StrAppend(&message, " [JetStream error ", code, "]");
  return absl::UnavailableError(message);
}

// A cnats object and its destroy function, as a unique_ptr.
template <typename T, void (*Destroy)(T*)>
struct NatsDeleter {
  void operator()(T* object) const {
    if (object != nullptr) Destroy(object);
  }
};
using StreamInfoPtr =
    std::unique_ptr<jsStreamInfo, NatsDeleter<jsStreamInfo, jsStreamInfo_Destroy>>;
using MsgPtr = std::unique_ptr<natsMsg, NatsDeleter<natsMsg, natsMsg_Destroy>>;
using MetaPtr = std::unique_ptr<jsMsgMetaData,
                                NatsDeleter<jsMsgMetaData, jsMsgMetaData_Destroy>>;

// A JetStream consumer, through its cnats subscription. Unsubscribing
// deletes an ephemeral consumer the subscription created.
class Consumer {
 public:
  Consumer() = default;
  ~Consumer() { Reset(); }
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Creates an ephemeral pull consumer of `stream` for `subject`, without
  // acknowledgements, starting at sequence `first` (or at the first event
  // stored at or after `since`, when given).
  absl::Status Create(jsCtx* js, const JetStreamOptions& options,
                      const std::string& subject, uint64_t first,
                      std::optional<absl::Time> since = std::nullopt) {
    Reset();
    jsSubOptions sub_options;
    jsSubOptions_Init(&sub_options);
    sub_options.Stream = options.stream.c_str();
    sub_options.Config.AckPolicy = js_AckNone;
    if (!since.has_value()) {
      sub_options.Config.DeliverPolicy = js_DeliverByStartSequence;
      sub_options.Config.OptStartSeq = first;
    } else if (*since > absl::UnixEpoch()) {
      sub_options.Config.DeliverPolicy = js_DeliverByStartTime;
      sub_options.Config.OptStartTime = absl::ToUnixNanos(*since);
    } else {
      // JetStream takes a start time after the epoch only; anything
      // earlier is every event.
      sub_options.Config.DeliverPolicy = js_DeliverAll;
    }
    // Removed by JetStream if this server goes away without deleting it.
    sub_options.Config.InactiveThreshold =
        absl::ToInt64Nanoseconds(std::max(absl::Minutes(1),
                                          10 * options.request_timeout));
    jsOptions js_options = RequestOptions(options.request_timeout);
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status =
        js_PullSubscribe(&subscription_, js, subject.c_str(), nullptr,
                         &js_options, &sub_options, &code);
    if (status != NATS_OK) {
      subscription_ = nullptr;
      return NatsError(absl::StrCat("create a consumer of ", options.stream,
                                    " for ", subject),
                       status, code);
    }
    // A fetch from a consumer with nothing pending waits for its whole
    // timeout, so readers ask first.
    jsConsumerInfo* info = nullptr;
    const natsStatus asked =
        natsSubscription_GetConsumerInfo(&info, subscription_, &js_options,
                                         &code);
    if (asked != NATS_OK) {
      Reset();
      return NatsError(absl::StrCat("look up a consumer of ", options.stream),
                       asked, code);
    }
    pending_ = info->NumPending;
    jsConsumerInfo_Destroy(info);
    return absl::OkStatus();
  }

  // Events the consumer had for delivery when it was created.
  uint64_t pending_at_start() const { return pending_; }

  void Reset() {
    if (subscription_ == nullptr) return;
    natsSubscription_Unsubscribe(subscription_);
    natsSubscription_Destroy(subscription_);
    subscription_ = nullptr;
  }

  natsSubscription* get() const { return subscription_; }

 private:
  natsSubscription* subscription_ = nullptr;
  uint64_t pending_ = 0;
};

// Stream sequence and consumer pending count of a delivered message.
struct Delivered {
  uint64_t sequence = 0;
  uint64_t pending = 0;
};

bool ReadMetadata(natsMsg* msg, Delivered* delivered) {
  jsMsgMetaData* raw = nullptr;
  if (natsMsg_GetMetaData(&raw, msg) != NATS_OK) return false;
  MetaPtr meta(raw);
  delivered->sequence = meta->Sequence.Stream;
  delivered->pending = meta->NumPending;
  return true;
}

// Fetches what `consumer` has ready now, up to `batch` messages and
// `max_bytes` bytes (0: no byte limit), without waiting for more; the
// next message alone when it is larger than `max_bytes`. REQUIRES: the
// consumer has a message pending (else the fetch waits for `timeout`, and
// returns an empty list).
absl::Status FetchReady(const Consumer& consumer, int batch, int64_t max_bytes,
                        absl::Duration timeout, natsMsgList* list) {
  jsFetchRequest request;
  jsFetchRequest_Init(&request);
  request.Batch = batch;
  request.MaxBytes = max_bytes;
  request.NoWait = true;
  request.Expires = absl::ToInt64Nanoseconds(timeout);
  *list = natsMsgList{};
  natsStatus status =
      natsSubscription_FetchRequest(list, consumer.get(), &request);
  if (status != NATS_OK && status != NATS_TIMEOUT &&
      status != NATS_NOT_FOUND && max_bytes > 0) {
    // JetStream refuses a request whose next message exceeds its byte
    // limit ("Message Size Exceeds MaxBytes").
    request.Batch = 1;
    request.MaxBytes = 0;
    *list = natsMsgList{};
    status = natsSubscription_FetchRequest(list, consumer.get(), &request);
  }
  if (status == NATS_OK) return absl::OkStatus();
  if (status == NATS_TIMEOUT || status == NATS_NOT_FOUND) {
    *list = natsMsgList{};
    return absl::OkStatus();
  }
  return NatsError("fetch from a consumer", status);
}

// A replaying stream's reader: a consumer filtered, where one subject can
// say it, to the subscription's types, kept while reads continue where the
// last one ended.
class JetStreamReader final : public EventReader {
 public:
  JetStreamReader(JetStreamStore* store, const SubscriptionFilter& filter)
      : store_(store),
        filter_(filter),
        subject_(FilterSubject(store->options().subject_prefix, filter)) {}

  absl::Status Read(uint64_t after, size_t limit, size_t limit_bytes,
                    std::vector<std::shared_ptr<const StoredEvent>>* out,
                    uint64_t* scanned_through) override {
    *scanned_through = after;
    // Every matching event up to `newest` is either read below or still
    // pending for the consumer. The stream's newest, as far as the tail
    // received it, is enough: a stream replays only what the hub no
    // longer holds.
    uint64_t newest = store_->tail_sequence();
    if (newest <= after) {
      absl::StatusOr<LogRange> range = store_->Range();
      if (!range.ok()) return range.status();
      newest = range->last;
    }
    if (newest <= after) return absl::OkStatus();

    const JetStreamOptions& options = store_->options();
    if (consumer_.get() == nullptr || after != position_) {
      absl::Status created = consumer_.Create(store_->jetstream(), options,
                                              subject_, after + 1);
      if (!created.ok()) return created;
      position_ = after;
      pending_ = consumer_.pending_at_start();
    }
    natsMsgList list{};
    if (pending_ > 0) {
      const absl::Status fetched = FetchReady(
          consumer_, static_cast<int>(std::max<size_t>(limit, 1)),
          static_cast<int64_t>(limit_bytes), options.request_timeout, &list);
      if (!fetched.ok()) {
        consumer_.Reset();
        return fetched;
      }
    }
    Delivered last;
    bool drained = list.Count == 0;
    for (int i = 0; i < list.Count; ++i) {
      Delivered delivered;
      if (!ReadMetadata(list.Msgs[i], &delivered)) continue;
      last = delivered;
      pending_ = delivered.pending;
      drained = delivered.pending == 0;
      std::shared_ptr<const StoredEvent> event = store_->ToEvent(list.Msgs[i]);
      if (event != nullptr && filter_.Matches(event->event_type())) {
        out->push_back(std::move(event));
      }
    }
    natsMsgList_Destroy(&list);
    if (last.sequence > 0) position_ = last.sequence;
    *scanned_through = std::max(position_, after);
    if (drained) {
      *scanned_through = std::max(*scanned_through, newest);
      position_ = *scanned_through;
      // The consumer's own position is behind position_ now; the next
      // read starts a new one there.
      consumer_.Reset();
    }
    return absl::OkStatus();
  }

 private:
  JetStreamStore* const store_;
  const SubscriptionFilter filter_;
  const std::string subject_;
  Consumer consumer_;
  // The last sequence the consumer delivered (or its start - 1), and the
  // matching events it still has.
  uint64_t position_ = 0;
  uint64_t pending_ = 0;
};

// Appends the sequence field to a serialized Event that has none: a
// repeated scalar field is read as its last value.
std::string WithSequence(const char* data, int size, uint64_t sequence) {
  std::string bytes;
  bytes.reserve(static_cast<size_t>(size) + 11);
  bytes.append(data, static_cast<size_t>(size));
  uint8_t field[1 + 10];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      WireFormatLite::MakeTag(Event::kSequenceFieldNumber,
                              WireFormatLite::WIRETYPE_VARINT),
      field);
  end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(sequence,
                                                                       end);
  bytes.append(reinterpret_cast<const char*>(field),
               static_cast<size_t>(end - field));
  return bytes;
}

}  // namespace

absl::Status ValidateJetStreamOptions(const JetStreamOptions& options) {
  const auto invalid = [](absl::string_view what) {
    return absl::InvalidArgumentError(what);
  };
  if (options.servers.empty()) return invalid("no NATS server URL");
  for (const std::string& server : options.servers) {
    absl::string_view rest = server;
    if (!absl::ConsumePrefix(&rest, "nats://") &&
        !absl::ConsumePrefix(&rest, "tls://")) {
      return invalid(absl::StrCat("NATS server \"", server,
                                  "\" is not a nats:// or tls:// URL"));
    }
    // [user[:password]@]host[:port]
    if (const size_t at = rest.rfind('@'); at != absl::string_view::npos) {
      rest.remove_prefix(at + 1);
    }
    absl::string_view host = rest;
    const size_t colon = rest.rfind(':');
    if (colon != absl::string_view::npos && rest.back() != ']') {
      host = rest.substr(0, colon);
      int port = 0;
      if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port < 1 ||
          port > 65535) {
        return invalid(absl::StrCat("NATS server \"", server,
                                    "\" has no port 1..65535"));
      }
    }
    if (host.empty() || absl::StrContains(host, "/")) {
      return invalid(
          absl::StrCat("NATS server \"", server, "\" names no host"));
    }
  }
  if (options.stream.empty() || options.stream.size() > 64 ||
      !IsSubjectPrefix(options.stream) ||
      options.stream.find('.') != std::string::npos) {
    return invalid(absl::StrCat(
        "nats_stream \"", options.stream,
        "\" must be 1..64 ASCII letters, digits, '-' or '_'"));
  }
  if (!IsSubjectPrefix(options.subject_prefix)) {
    return invalid(absl::StrCat(
        "nats_subject_prefix \"", options.subject_prefix,
        "\" must be tokens of ASCII letters, digits, '-' or '_' joined by "
        "'.'"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return invalid(
        "nats_tls_cert_file and nats_tls_key_file go together: give both or "
        "neither");
  }
  if (options.replicas < 1 || options.replicas > 5) {
    return invalid("nats_stream_replicas must be 1..5");
  }
  if (options.duplicate_window < absl::Seconds(1)) {
    return invalid("nats_duplicate_window must be at least 1s");
  }
  if (options.max_age > absl::ZeroDuration() &&
      options.duplicate_window > options.max_age) {
    return invalid(
        "nats_duplicate_window must not be longer than retention_age: "
        "JetStream cannot remember ids of events it no longer holds");
  }
  if (options.connect_timeout < absl::Milliseconds(100) ||
      options.request_timeout < absl::Milliseconds(100)) {
    return invalid(
        "nats_connect_timeout and nats_request_timeout must be at least "
        "100ms");
  }
  if (options.max_pending_publishes < 1) {
    return invalid("nats_max_pending_publishes must be positive");
  }
  if (options.tail_batch < 1 || options.tail_batch > 10000) {
    return invalid("nats_tail_batch must be 1..10000");
  }
  return absl::OkStatus();
}

JetStreamStore::JetStreamStore(JetStreamOptions options, EventHub* hub)
    : options_(std::move(options)),
      hub_(hub),
      duplicates_queue_(std::make_unique<WorkQueue>(1)) {}

absl::StatusOr<std::unique_ptr<JetStreamStore>> JetStreamStore::Open(
    JetStreamOptions options, EventHub* hub) {
  if (absl::Status valid = ValidateJetStreamOptions(options); !valid.ok()) {
    return valid;
  }
  std::unique_ptr<JetStreamStore> store(
      new JetStreamStore(std::move(options), hub));
  if (absl::Status status = store->Connect(); !status.ok()) return status;
  // Room for the headers a publish carries besides the event (its message
  // id, at most max_id_bytes, and NATS' framing).
  constexpr int64_t kHeaderRoom = 4 << 10;
  const int64_t max_payload = natsConnection_GetMaxPayload(store->connection_);
  if (store->options_.max_event_bytes > 0 &&
      max_payload < static_cast<int64_t>(store->options_.max_event_bytes) +
                        kHeaderRoom) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the NATS servers take messages of up to ", max_payload,
        " bytes (their max_payload), but an event may take up to ",
        store->options_.max_event_bytes,
        " bytes (--max_event_bytes) and its headers up to ", kHeaderRoom,
        ": raise max_payload in the servers' "
        "configuration (e.g. \"max_payload: 8MB\"), or lower "
        "--max_event_bytes and --max_body_bytes"));
  }
  if (absl::Status status = store->EnsureStream(); !status.ok()) {
    return status;
  }
  absl::StatusOr<LogRange> range = store->Range();
  if (!range.ok()) return range.status();
  hub->StartAfter(range->last);
  store->tail_sequence_ = range->last;
  store->tail_ = std::thread(
      [store = store.get(), after = range->last] { store->TailLoop(after); });
  spdlog::info(
      "event store is a JetStream stream stream={} subjects={}.> "
      "replicas={} storage={} duplicate_window={} last_seq={}",
      store->options_.stream, store->options_.subject_prefix,
      store->options_.replicas,
      store->options_.memory_storage ? "memory" : "file",
      absl::FormatDuration(store->options_.duplicate_window), range->last);
  return store;
}

absl::Status JetStreamStore::Connect() {
  natsOptions* raw_options = nullptr;
  if (natsOptions_Create(&raw_options) != NATS_OK) {
    return absl::ResourceExhaustedError("cannot create NATS options");
  }
  std::unique_ptr<natsOptions, NatsDeleter<natsOptions, natsOptions_Destroy>>
      nats_options(raw_options);
  std::vector<const char*> servers;
  for (const std::string& server : options_.servers) {
    servers.push_back(server.c_str());
  }
  natsOptions_SetServers(nats_options.get(), servers.data(),
                         static_cast<int>(servers.size()));
  natsOptions_SetName(nats_options.get(), "fanout-server");
  // Once connected, reconnect for as long as the process runs; publishes
  // made meanwhile fail after request_timeout and are retried by senders.
  natsOptions_SetMaxReconnect(nats_options.get(), -1);
  natsOptions_SetReconnectWait(nats_options.get(), 250);
  natsOptions_SetTimeout(nats_options.get(), Millis(options_.request_timeout));
  // A delivery's answer waits for its publish: send each at once rather
  // than let the client hold it back (up to a millisecond) for company.
  natsOptions_SetSendAsap(nats_options.get(), true);
  natsOptions_SetDisconnectedCB(
      nats_options.get(),
      [](natsConnection* connection, void*) {
        // Also called when the store closes the connection itself.
        if (!natsConnection_IsClosed(connection)) {
          spdlog::warn("NATS connection lost");
        }
      },
      nullptr);
  natsOptions_SetReconnectedCB(
      nats_options.get(),
      [](natsConnection* connection, void* store) {
        char url[256] = "";
        natsConnection_GetConnectedUrl(connection, url, sizeof(url));
        spdlog::info("NATS connection restored server={}", url);
        static_cast<JetStreamStore*>(store)->reconnected_ = true;
      },
      this);

  if (absl::Status status = SetUpSecurity(nats_options.get()); !status.ok()) {
    return status;
  }

  const absl::Time deadline = absl::Now() + options_.connect_timeout;
  absl::Status last;
  while (true) {
    const natsStatus status =
        natsConnection_Connect(&connection_, nats_options.get());
    if (status == NATS_OK) break;
    connection_ = nullptr;
    last = NatsError(absl::StrCat("connect to NATS at ",
                                  absl::StrJoin(options_.servers, ",")),
                     status);
    if (absl::Now() + absl::Milliseconds(250) > deadline) return last;
    absl::SleepFor(absl::Milliseconds(250));
  }

  jsOptions js_options = RequestOptions(options_.request_timeout);
  js_options.PublishAsync.MaxPending = options_.max_pending_publishes;
  js_options.PublishAsync.AckHandler = &JetStreamStore::OnAck;
  js_options.PublishAsync.AckHandlerClosure = this;
  // A full window is answered 503 quickly rather than holding an HTTP
  // thread.
  js_options.PublishAsync.StallWait = 20;
  const natsStatus status =
      natsConnection_JetStream(&js_, connection_, &js_options);
  if (status != NATS_OK) return NatsError("open a JetStream context", status);
  return absl::OkStatus();
}

absl::Status JetStreamStore::SetUpSecurity(natsOptions* nats_options) {
  // The files are read here, so that a mistake stops the start naming the
  // file rather than failing every connection attempt until the timeout.
  if (!options_.creds_file.empty()) {
    absl::StatusOr<std::string> creds =
        ReadProtectedFile(options_.creds_file, "--nats_creds_file");
    if (!creds.ok()) return creds.status();
    if (creds->find("NKEY SEED") == std::string::npos ||
        creds->find("NATS USER JWT") == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--nats_creds_file ", options_.creds_file,
          " is not a NATS credentials file (a user JWT and an NKEY seed)"));
    }
    const natsStatus status = natsOptions_SetUserCredentialsFromFiles(
        nats_options, options_.creds_file.c_str(), nullptr);
    if (status != NATS_OK) {
      return NatsError(absl::StrCat("use --nats_creds_file ",
                                    options_.creds_file),
                       status);
    }
  }
  bool tls = !options_.tls_ca_file.empty() || !options_.tls_cert_file.empty();
  for (const std::string& server : options_.servers) {
    tls = tls || server.rfind("tls://", 0) == 0;
  }
  if (!tls) return absl::OkStatus();
  natsStatus status = natsOptions_SetSecure(nats_options, true);
  if (status == NATS_OK && !options_.tls_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadCaCertificates(options_.tls_ca_file, "--nats_tls_ca_file");
    if (!ca.ok()) return ca.status();
    status = natsOptions_SetCATrustedCertificates(nats_options, ca->c_str());
  }
  if (status == NATS_OK && !options_.tls_cert_file.empty()) {
    absl::StatusOr<TlsIdentity> identity = ReadTlsIdentity(
        options_.tls_cert_file, "--nats_tls_cert_file", options_.tls_key_file,
        "--nats_tls_key_file");
    if (!identity.ok()) return identity.status();
    status = natsOptions_SetCertificatesChain(
        nats_options, identity->certificate_chain.c_str(),
        identity->private_key.c_str());
  }
  if (status != NATS_OK) return NatsError("set up TLS to NATS", status);
  return absl::OkStatus();
}

absl::Status JetStreamStore::EnsureStream() {
  const std::string subject = AllEventsSubject(options_.subject_prefix);
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = options_.stream.c_str();
  config.Description = "staffify-fanout events";
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Retention = js_LimitsPolicy;
  config.Discard = js_DiscardOld;
  config.Storage = options_.memory_storage ? js_MemoryStorage : js_FileStorage;
  config.Replicas = options_.replicas;
  config.Duplicates = absl::ToInt64Nanoseconds(options_.duplicate_window);
  config.MaxAge = absl::ToInt64Nanoseconds(options_.max_age);
  config.MaxBytes = options_.max_bytes == 0
                        ? -1
                        : static_cast<int64_t>(options_.max_bytes);

  // A cluster that is still electing its leaders answers "temporarily
  // unavailable" or not at all; both are waited out until connect_timeout.
  const absl::Time deadline = absl::Now() + options_.connect_timeout;
  absl::Status last;
  while (true) {
    jsStreamInfo* raw_info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus status =
        js_GetStreamInfo(&raw_info, js_, options_.stream.c_str(), nullptr,
                         &code);
    StreamInfoPtr info(raw_info);
    if (status == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
      status = js_AddStream(&raw_info, js_, &config, nullptr, &code);
      info.reset(raw_info);
      if (status == NATS_OK) {
        spdlog::info("created JetStream stream stream={}", options_.stream);
        return absl::OkStatus();
      }
      last = NatsError(absl::StrCat("create stream ", options_.stream),
                       status, code);
      // JetStream refused the stream itself (e.g. subjects that overlap
      // another stream's, more replicas than nodes): no use waiting.
      // "Already in use" means another server created it meanwhile: look
      // again.
      if (code != 0 && code != JSClusterNotAvailErr &&
          code != JSStreamNameExistErr) {
        return absl::FailedPreconditionError(last.message());
      }
    } else if (status == NATS_OK) {
      const jsStreamConfig& have = *info->Config;
      std::vector<std::string> differences;
      const auto differ = [&](absl::string_view what, const auto& has,
                              const auto& wants) {
        const std::string is = absl::StrCat(has);
        const std::string should = absl::StrCat(wants);
        if (is != should) {
          differences.push_back(
              absl::StrCat(what, " is ", is, " (settings give ", should, ")"));
        }
      };
      bool covers = false;
      for (int i = 0; i < have.SubjectsLen; ++i) {
        covers = covers || subject == have.Subjects[i];
      }
      if (!covers) {
        differences.push_back(
            absl::StrCat("subjects do not include ", subject));
      }
      differ("retention policy", have.Retention == js_LimitsPolicy ? "limits"
                                 : "other", "limits");
      differ("storage", have.Storage == js_MemoryStorage ? "memory" : "file",
             options_.memory_storage ? "memory" : "file");
      differ("replicas", have.Replicas, config.Replicas);
      differ("duplicate window",
             absl::FormatDuration(absl::Nanoseconds(have.Duplicates)),
             absl::FormatDuration(options_.duplicate_window));
      differ("max age", absl::FormatDuration(absl::Nanoseconds(have.MaxAge)),
             absl::FormatDuration(options_.max_age));
      const auto bytes = [](int64_t limit) {
        return limit < 0 ? std::string("none") : absl::StrCat(limit);
      };
      differ("max bytes", bytes(have.MaxBytes), bytes(config.MaxBytes));
      differ("discard policy", have.Discard == js_DiscardOld ? "old" : "new",
             "old");
      if (differences.empty()) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          "JetStream stream ", options_.stream,
          " exists with other settings: ", absl::StrJoin(differences, "; "),
          ". It is not changed: change the flags to match, or update or "
          "delete the stream"));
    } else {
      last = NatsError(absl::StrCat("look up stream ", options_.stream),
                       status, code);
    }
    if (absl::Now() + absl::Milliseconds(250) > deadline) return last;
    spdlog::debug("waiting for JetStream error={:?}", last.ToString());
    absl::SleepFor(absl::Milliseconds(250));
  }
}

JetStreamStore::~JetStreamStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (js_ != nullptr) {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = Millis(options_.request_timeout);
    js_PublishAsyncComplete(js_, &wait);
  }
  std::unordered_map<natsMsg*, PendingAppend> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(pending_);
  }
  for (auto& [msg, pending] : left) {
    pending.done(absl::UnavailableError(
        "server stopped before JetStream acknowledged the event"));
  }
  if (tail_.joinable()) tail_.join();
  duplicates_queue_.reset();  // Answers the duplicates being resolved.
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (connection_ != nullptr) {
    natsConnection_Close(connection_);
    natsConnection_Destroy(connection_);
  }
}

void JetStreamStore::Append(Event event, AppendDone done) {
  const std::string subject =
      EventTypeSubject(options_.subject_prefix, event.event_type());
  if (subject.size() > kMaxNatsSubjectBytes) {
    // ValidateOptions keeps types short enough; this guards the connection.
    done(absl::InvalidArgumentError(
        "event type too long for a NATS subject"));
    return;
  }
  std::string raw_body = event.raw_body();
  const std::string id = event.id();
  event.clear_sequence();
  const std::string bytes = event.SerializeAsString();

  natsMsg* msg = nullptr;
  natsStatus status = natsMsg_Create(&msg, subject.c_str(), nullptr,
                                     bytes.data(), static_cast<int>(bytes.size()));
  if (status != NATS_OK) {
    done(NatsError("create a NATS message", status));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      natsMsg_Destroy(msg);
      done(absl::UnavailableError("server is stopping"));
      return;
    }
    pending_.emplace(msg, PendingAppend{std::move(done), std::move(raw_body)});
  }
  jsPubOptions publish;
  jsPubOptions_Init(&publish);
  const std::string message_id = MessageId(id);
  publish.MsgId = message_id.c_str();
  publish.MaxWait = Millis(options_.request_timeout);
  natsMsg* published = msg;
  status = js_PublishMsgAsync(js_, &published, &publish);
  if (status == NATS_OK) return;  // OnAck completes it.

  // Not sent: the message is still ours, and no acknowledgement will come.
  PendingAppend pending;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(msg);
    if (it == pending_.end()) return;  // Completed after all.
    pending = std::move(it->second);
    pending_.erase(it);
  }
  natsMsg_Destroy(msg);
  const absl::Status error =
      status == NATS_TIMEOUT
          ? absl::UnavailableError(absl::StrCat(
                "too many events awaiting JetStream's acknowledgement (",
                options_.max_pending_publishes, "); retry later"))
          : NatsError("publish to JetStream", status);
  PublishFailed(std::string(error.message()));
  pending.done(error);
}

void JetStreamStore::PublishFailed(const std::string& reason) {
  publish_failures_.fetch_add(1);
  uint64_t failures;
  {
    absl::MutexLock lock(&mu_);
    ++unlogged_failures_;
    const absl::Time now = absl::Now();
    if (now - last_failure_log_ < absl::Seconds(1)) return;
    last_failure_log_ = now;
    failures = unlogged_failures_;
    unlogged_failures_ = 0;
  }
  spdlog::warn("JetStream did not store events (answered 503) events={} "
               "error={:?}",
               failures, reason);
}

void JetStreamStore::OnAck(jsCtx*, natsMsg* msg, jsPubAck* ack,
                           jsPubAckErr* error, void* store) {
  static_cast<JetStreamStore*>(store)->CompleteAppend(msg, ack, error);
  natsMsg_Destroy(msg);
}

void JetStreamStore::CompleteAppend(natsMsg* msg, jsPubAck* ack,
                                    jsPubAckErr* error) {
  PendingAppend pending;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(msg);
    if (it == pending_.end()) return;  // Failed at shutdown already.
    pending = std::move(it->second);
    pending_.erase(it);
  }
  if (ack == nullptr || (error != nullptr && error->Err != NATS_OK)) {
    std::string reason = "no acknowledgement";
    if (error != nullptr) {
      reason = error->ErrText != nullptr && *error->ErrText != '\0'
                   ? std::string(error->ErrText)
                   : std::string(natsStatus_GetText(error->Err));
    }
    PublishFailed(reason);
    pending.done(absl::UnavailableError(
        absl::StrCat("JetStream did not acknowledge the event: ", reason)));
    return;
  }
  if (!ack->Duplicate) {
    AppendResult result;
    result.sequence = ack->Sequence;
    pending.done(std::move(result));
    return;
  }
  duplicates_.fetch_add(1);
  // Reading the original is a request of its own: not on cnats' thread,
  // which delivers every other acknowledgement.
  duplicates_queue_->Post(
      [this, sequence = ack->Sequence,
       pending = std::make_shared<PendingAppend>(std::move(pending))] {
        ResolveDuplicate(sequence, std::move(*pending));
      });
}

void JetStreamStore::ResolveDuplicate(uint64_t sequence,
                                      PendingAppend pending) {
  AppendResult result;
  result.sequence = sequence;
  result.duplicate = true;
  natsMsg* raw = nullptr;
  jsOptions js_options = RequestOptions(options_.request_timeout);
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus status = js_GetMsg(&raw, js_, options_.stream.c_str(),
                                      sequence, &js_options, &code);
  MsgPtr original(raw);
  Event stored;
  if (status != NATS_OK ||
      !stored.ParseFromArray(natsMsg_GetData(original.get()),
                             natsMsg_GetDataLength(original.get()))) {
    // The answer stays "duplicate"; only whether it differs is unknown.
    spdlog::warn(
        "cannot read the stored original of a duplicate seq={} error={:?}",
        sequence, NatsError("get message", status, code).ToString());
  } else if (stored.raw_body() != pending.raw_body) {
    result.differs = true;
    result.stored_event_type = stored.event_type();
    result.stored_problems.assign(stored.conversion_problems().begin(),
                                  stored.conversion_problems().end());
    differing_duplicates_.fetch_add(1);
  }
  pending.done(std::move(result));
}

std::shared_ptr<const StoredEvent> JetStreamStore::ToEvent(
    natsMsg* msg) const {
  Delivered delivered;
  std::optional<std::string> type =
      EventTypeFromSubject(options_.subject_prefix, natsMsg_GetSubject(msg));
  if (!type.has_value() || !ReadMetadata(msg, &delivered)) return nullptr;
  return std::make_shared<const StoredEvent>(
      delivered.sequence, *std::move(type),
      WithSequence(natsMsg_GetData(msg), natsMsg_GetDataLength(msg),
                   delivered.sequence));
}

void JetStreamStore::TailLoop(uint64_t after) {
  const std::string subject = AllEventsSubject(options_.subject_prefix);
  const auto stopping = [this] {
    absl::MutexLock lock(&mu_);
    return stopping_;
  };
  Consumer consumer;
  absl::Time idle_since = absl::Now();
  absl::Duration backoff = absl::Milliseconds(50);
  while (!stopping()) {
    if (consumer.get() == nullptr) {
      absl::Status created =
          consumer.Create(js_, options_, subject, after + 1);
      if (!created.ok()) {
        spdlog::warn("cannot follow the JetStream stream after_seq={} "
                     "error={:?}",
                     after, created.ToString());
        absl::SleepFor(backoff);
        backoff = std::min(2 * backoff, absl::Seconds(1));
        continue;
      }
      idle_since = absl::Now();
    }
    natsMsgList list{};
    jsErrCode code = static_cast<jsErrCode>(0);
    // Returns what is there as soon as anything is, or after 500ms
    // without any.
    const natsStatus status = natsSubscription_Fetch(
        &list, consumer.get(), options_.tail_batch, 500, &code);
    if (status == NATS_OK) {
      for (int i = 0; i < list.Count; ++i) {
        std::shared_ptr<const StoredEvent> event = ToEvent(list.Msgs[i]);
        Delivered delivered;
        if (event != nullptr) {
          delivered.sequence = event->sequence();
        } else if (!ReadMetadata(list.Msgs[i], &delivered)) {
          continue;
        }
        // A consumer created anew may deliver what was received before.
        if (delivered.sequence <= after) continue;
        after = delivered.sequence;
        if (event != nullptr) {
          hub_->Publish(std::move(event));
        } else if (foreign_messages_.fetch_add(1) == 0) {
          // Counted here, once a message; replays skip it too.
          spdlog::warn(
              "JetStream stream holds a message this service did not "
              "write; it is skipped stream={} seq={} subject={:?}",
              options_.stream, after, natsMsg_GetSubject(list.Msgs[i]));
        }
      }
      natsMsgList_Destroy(&list);
      tail_sequence_ = after;
      idle_since = absl::Now();
      backoff = absl::Milliseconds(50);
      continue;
    }
    if (status == NATS_TIMEOUT) {
      // Quiet, or following a consumer that is gone (its server stopped):
      // compare with the stream every second of quiet, and at once after
      // the connection to NATS was restored (the consumer lived on a
      // server, which may be the one that went away).
      const bool reconnected = reconnected_.exchange(false);
      if (!reconnected && absl::Now() - idle_since < absl::Seconds(1)) {
        continue;
      }
      idle_since = absl::Now();
      absl::StatusOr<LogRange> range = Range();
      if (range.ok() && range->last <= after && !reconnected) continue;
      // A stream that cannot be asked (electing a leader) may well have
      // lost the consumer too.
      spdlog::warn(
          "following the JetStream stream anew after_seq={} "
          "stream_last_seq={}",
          after, range.ok() ? absl::StrCat(range->last)
                            : std::string(range.status().message()));
    } else {
      spdlog::warn("following the JetStream stream failed after_seq={} "
                   "error={:?}",
                   after, NatsError("fetch", status, code).ToString());
      absl::SleepFor(backoff);
      backoff = std::min(2 * backoff, absl::Seconds(1));
    }
    tail_restarts_.fetch_add(1);
    consumer.Reset();
  }
}

std::unique_ptr<EventReader> JetStreamStore::NewReader(
    const SubscriptionFilter& filter) {
  return std::make_unique<JetStreamReader>(this, filter);
}

absl::StatusOr<LogRange> JetStreamStore::Range() {
  absl::StatusOr<StreamState> state = State();
  if (!state.ok()) return state.status();
  return state->range;
}

absl::StatusOr<JetStreamStore::StreamState> JetStreamStore::State() {
  jsStreamInfo* raw_info = nullptr;
  jsOptions js_options = RequestOptions(options_.request_timeout);
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus status = js_GetStreamInfo(
      &raw_info, js_, options_.stream.c_str(), &js_options, &code);
  StreamInfoPtr info(raw_info);
  if (status != NATS_OK) {
    return NatsError(absl::StrCat("look up stream ", options_.stream), status,
                     code);
  }
  StreamState state;
  state.range.last = info->State.LastSeq;
  if (info->State.Msgs == 0) {
    state.range.first = state.range.last + 1;
    // Every event was removed; the newest of them was stored then.
    state.removed_until = absl::FromUnixNanos(info->State.LastTime);
  } else {
    state.range.first = info->State.FirstSeq;
    // The removed events were stored before the oldest kept one.
    state.removed_until =
        absl::FromUnixNanos(info->State.FirstTime) - absl::Nanoseconds(1);
  }
  if (state.range.first <= 1) state.removed_until = absl::InfinitePast();
  return state;
}

absl::StatusOr<uint64_t> JetStreamStore::FirstSequenceSince(absl::Time time) {
  absl::StatusOr<StreamState> state = State();
  if (!state.ok()) return state.status();
  const LogRange* range = &state->range;
  // Events were removed (by age or size), each received before JetStream
  // stored it: any of them stored at or after `time` may have been
  // received then too.
  if (time <= state->removed_until) {
    return absl::OutOfRangeError(absl::StrCat(
        "events received at ", absl::FormatTime(time),
        " may no longer be retained; the oldest retained is seq ",
        range->first));
  }
  // JetStream finds the first event it stored at or after `time`; an event
  // is stored just after it was received, so the first received at or
  // after `time` is that one or one shortly after it.
  Consumer consumer;
  absl::Status status =
      consumer.Create(js_, options_, AllEventsSubject(options_.subject_prefix),
                      0, time);
  if (!status.ok()) return status;
  constexpr int kLookAhead = 64;
  natsMsgList list{};
  if (consumer.pending_at_start() > 0) {
    status =
        FetchReady(consumer, kLookAhead, 0, options_.request_timeout, &list);
    if (!status.ok()) return status;
  }
  uint64_t first = range->last + 1;
  for (int i = 0; i < list.Count; ++i) {
    Delivered delivered;
    if (!ReadMetadata(list.Msgs[i], &delivered)) continue;
    Event event;
    event.ParseFromArray(natsMsg_GetData(list.Msgs[i]),
                         natsMsg_GetDataLength(list.Msgs[i]));
    first = delivered.sequence + 1;
    if (TimeFromTimestamp(event.received_at()) >= time) {
      first = delivered.sequence;
      break;
    }
  }
  natsMsgList_Destroy(&list);
  return std::max(first, range->first);
}

bool JetStreamStore::Connected() const {
  return connection_ != nullptr &&
         natsConnection_Status(connection_) == NATS_CONN_STATUS_CONNECTED;
}

void JetStreamStore::RenderMetrics(std::string* out) {
  const bool connected = Connected();
  // The sequences held, from the stream (left out when it cannot be asked;
  // not asked at all while disconnected, so that a scrape does not wait
  // for request_timeout).
  absl::StatusOr<LogRange> range =
      connected ? Range() : absl::UnavailableError("not connected");
  RenderStoreMetrics(duplicates_.load(), differing_duplicates_.load(),
                     range.ok() ? &*range : nullptr, out);
  absl::StrAppend(
      out,
      "# HELP fanout_nats_connected Whether the server is connected to "
      "NATS.\n# TYPE fanout_nats_connected gauge\nfanout_nats_connected ",
      connected ? 1 : 0,
      "\n# HELP fanout_nats_publish_failures_total Events JetStream did not "
      "acknowledge (answered 503).\n"
      "# TYPE fanout_nats_publish_failures_total counter\n"
      "fanout_nats_publish_failures_total ",
      publish_failures_.load(),
      "\n# HELP fanout_nats_tail_restarts_total Times the consumer that "
      "feeds subscribers was created anew.\n"
      "# TYPE fanout_nats_tail_restarts_total counter\n"
      "fanout_nats_tail_restarts_total ",
      tail_restarts_.load(),
      "\n# HELP fanout_nats_foreign_messages_total Messages in the stream "
      "not written by this service, skipped.\n"
      "# TYPE fanout_nats_foreign_messages_total counter\n"
      "fanout_nats_foreign_messages_total ",
      foreign_messages_.load(),
      "\n# HELP fanout_nats_tail_sequence Newest sequence received from the "
      "stream.\n# TYPE fanout_nats_tail_sequence gauge\n"
      "fanout_nats_tail_sequence ",
      tail_sequence_.load(), "\n");
}

}  // namespace fanout

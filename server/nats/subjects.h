// How event types become NATS subjects, and subscription filters subject
// filters, for the JetStream backend.
//
// The event of type "ticket.created" is stored on "<prefix>.ticket.created":
// each segment of the type is one subject token. A segment may hold any
// character an event type allows (server/convert/event_type.h), including
// '>', '%' and non-ASCII ones a newer sender might use, so each token is
// the segment percent-encoded: bytes other than ASCII letters, digits, '-'
// and '_' become "%XX" (upper-case hex). The encoding is one-to-one, so no
// type can land on another type's subject or be caught by another type's
// filter, and every subject decodes back to its type.

#ifndef FANOUT_SERVER_NATS_SUBJECTS_H_
#define FANOUT_SERVER_NATS_SUBJECTS_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "server/fanout/subscription_filter.h"

namespace fanout {

// Returns true if `prefix` can lead the stream's subjects: one or more
// tokens of ASCII letters, digits, '-' and '_', joined by '.'.
bool IsSubjectPrefix(absl::string_view prefix);

// The subject of events of type `event_type`. REQUIRES: IsEventType.
std::string EventTypeSubject(absl::string_view prefix,
                             absl::string_view event_type);

// The subject of events of the longest type of `max_type_bytes` bytes:
// what EventTypeSubject can return at most.
size_t MaxSubjectBytes(absl::string_view prefix, size_t max_type_bytes);

// The JetStream message id of the delivery whose id is `id`: the id with
// '%', spaces and bytes outside printable ASCII written "%XX", so that a
// header keeps it as it is (NATS trims spaces around header values). One
// to one, as ids must stay distinct. At most three times as long as `id`.
std::string MessageId(absl::string_view id);

// The event type whose subject is `subject`, or nullopt if `subject` is not
// one EventTypeSubject makes under `prefix`.
std::optional<std::string> EventTypeFromSubject(absl::string_view prefix,
                                                absl::string_view subject);

// The subject filter of every event under `prefix`: "<prefix>.>", the
// stream's subjects.
std::string AllEventsSubject(absl::string_view prefix);

// The subject filter that selects exactly the events `filter` matches when
// it names one type or one domain ("ticket.*" is "<prefix>.ticket.>"), and
// every event ("<prefix>.>") otherwise: a JetStream 2.9 consumer takes one
// filter subject, so other filters are applied as events arrive.
std::string FilterSubject(absl::string_view prefix,
                          const SubscriptionFilter& filter);

}  // namespace fanout

#endif  // FANOUT_SERVER_NATS_SUBJECTS_H_

#include "tests/util/examples.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fanout::testing {

std::vector<std::string> ExampleEventTypes() {
  return {
      "appointment.booked",
      "appointment.cancelled",
      "appointment.rescheduled",
      "call.analyzed",
      "call.completed",
      "call.recording_available",
      "call.transferred",
      "chat.completed",
      "contact.collected",
      "emergency.escalated",
      "maintenance_request.created",
      "maintenance_request.updated",
      "tenant.identified",
      "test.ping",
      "ticket.created",
      "ticket.note_added",
      "ticket.resolved",
      "ticket.status_changed",
  };
}

absl::StatusOr<std::string> ReadExample(absl::string_view event_type) {
  const std::string path =
      absl::StrCat(FANOUT_EXAMPLES_DIR, "/", event_type, ".json");
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream body;
  body << in.rdbuf();
  return body.str();
}

}  // namespace fanout::testing

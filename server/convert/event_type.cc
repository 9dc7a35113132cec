#include "server/convert/event_type.h"

#include <algorithm>

#include "absl/strings/str_split.h"

namespace fanout {

bool IsEventTypeSegment(absl::string_view segment) {
  return !segment.empty() &&
         std::all_of(segment.begin(), segment.end(), [](char c) {
           const unsigned char u = static_cast<unsigned char>(c);
           return u > 0x20 && u != 0x7f && c != '.' && c != '*';
         });
}

bool IsEventType(absl::string_view type) {
  for (absl::string_view segment : absl::StrSplit(type, '.')) {
    if (!IsEventTypeSegment(segment)) return false;
  }
  return true;
}

bool IsPrintable(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return u >= 0x20 && u != 0x7f;
  });
}

}  // namespace fanout

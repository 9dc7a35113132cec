#include "server/nats/subjects.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/convert/event_type.h"

namespace fanout {
namespace {

bool IsPlainByte(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_';
}

void AppendToken(absl::string_view segment, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : segment) {
    if (IsPlainByte(c)) {
      out->push_back(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out->push_back('%');
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xF]);
    }
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // Lower case is not what AppendToken writes.
}

// Decodes one token into `out`; false if AppendToken cannot have written
// it (so that each type has exactly one subject).
bool DecodeToken(absl::string_view token, std::string* out) {
  if (token.empty()) return false;
  for (size_t i = 0; i < token.size(); ++i) {
    const char c = token[i];
    if (IsPlainByte(c)) {
      out->push_back(c);
      continue;
    }
    if (c != '%' || i + 2 >= token.size()) return false;
    const int high = HexValue(token[i + 1]);
    const int low = HexValue(token[i + 2]);
    if (high < 0 || low < 0) return false;
    const char decoded = static_cast<char>(high << 4 | low);
    if (IsPlainByte(decoded)) return false;
    out->push_back(decoded);
    i += 2;
  }
  return true;
}

}  // namespace

bool IsSubjectPrefix(absl::string_view prefix) {
  if (prefix.empty()) return false;
  for (absl::string_view token : absl::StrSplit(prefix, '.')) {
    if (token.empty()) return false;
    for (char c : token) {
      if (!IsPlainByte(c)) return false;
    }
  }
  return true;
}

std::string EventTypeSubject(absl::string_view prefix,
                             absl::string_view event_type) {
  std::string subject(prefix);
  for (absl::string_view segment : absl::StrSplit(event_type, '.')) {
    subject.push_back('.');
    AppendToken(segment, &subject);
  }
  return subject;
}

size_t MaxSubjectBytes(absl::string_view prefix, size_t max_type_bytes) {
  // Each byte of a type becomes at most three; each '.' stays one.
  return prefix.size() + 1 + 3 * max_type_bytes;
}

std::string MessageId(absl::string_view id) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(id.size());
  for (char c : id) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte > 0x20 && byte < 0x7f && c != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

std::optional<std::string> EventTypeFromSubject(absl::string_view prefix,
                                                absl::string_view subject) {
  if (!absl::ConsumePrefix(&subject, prefix) ||
      !absl::ConsumePrefix(&subject, ".")) {
    return std::nullopt;
  }
  std::string type;
  bool first = true;
  for (absl::string_view token : absl::StrSplit(subject, '.')) {
    if (!first) type.push_back('.');
    first = false;
    if (!DecodeToken(token, &type)) return std::nullopt;
  }
  if (!IsEventType(type)) return std::nullopt;
  return type;
}

std::string AllEventsSubject(absl::string_view prefix) {
  return absl::StrCat(prefix, ".>");
}

std::string FilterSubject(absl::string_view prefix,
                          const SubscriptionFilter& filter) {
  if (!filter.matches_all()) {
    if (filter.exact_types().size() == 1 && filter.domains().empty()) {
      return EventTypeSubject(prefix, filter.exact_types().front());
    }
    if (filter.domains().size() == 1 && filter.exact_types().empty()) {
      std::string subject(prefix);
      subject.push_back('.');
      AppendToken(filter.domains().front(), &subject);
      subject.append(".>");
      return subject;
    }
  }
  return AllEventsSubject(prefix);
}

}  // namespace fanout

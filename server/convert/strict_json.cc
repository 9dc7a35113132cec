#include "server/convert/strict_json.h"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/error.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value_stack.hpp>
#include <charconv>
#include <cstdint>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace fanout {
namespace {

// Longest key path quoted in an error message, in bytes.
constexpr size_t kMaxQuotedPathBytes = 200;

// Builds the value as Boost.JSON's own parser does (on a value_stack),
// tracks the keys of each open object to find a repeated one, and reads
// numbers with a fraction or exponent exactly.
class StrictHandler {
 public:
  static constexpr std::size_t max_object_size =
      boost::json::object::max_size();
  static constexpr std::size_t max_array_size = boost::json::array::max_size();
  static constexpr std::size_t max_key_size = boost::json::string::max_size();
  static constexpr std::size_t max_string_size =
      boost::json::string::max_size();

  explicit StrictHandler(boost::json::storage_ptr storage) {
    stack_.reset(std::move(storage));
  }

  boost::json::value Release() { return stack_.release(); }

  // Whether a repeated key stopped the parse, and its path.
  bool found_duplicate() const { return found_duplicate_; }
  const std::string& duplicate_path() const { return duplicate_path_; }

  bool on_document_begin(boost::json::error_code&) { return true; }
  bool on_document_end(boost::json::error_code&) { return true; }

  bool on_object_begin(boost::json::error_code&) {
    frames_.emplace_back();
    frames_.back().is_object = true;
    return true;
  }
  bool on_object_end(std::size_t n, boost::json::error_code&) {
    stack_.push_object(n);
    frames_.pop_back();
    return ValueDone();
  }
  bool on_array_begin(boost::json::error_code&) {
    frames_.emplace_back();
    return true;
  }
  bool on_array_end(std::size_t n, boost::json::error_code&) {
    stack_.push_array(n);
    frames_.pop_back();
    return ValueDone();
  }

  bool on_key_part(boost::json::string_view s, std::size_t,
                   boost::json::error_code&) {
    stack_.push_chars(s);
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t,
              boost::json::error_code& ec) {
    stack_.push_key(s);
    key_.append(s.data(), s.size());
    Frame& frame = frames_.back();
    if (!frame.keys.insert(key_).second) {
      frame.key = std::move(key_);
      duplicate_path_ = CurrentPath();
      found_duplicate_ = true;
      ec = boost::json::make_error_code(boost::json::error::syntax);
      return false;
    }
    frame.key = std::move(key_);
    key_.clear();
    return true;
  }

  bool on_string_part(boost::json::string_view s, std::size_t,
                      boost::json::error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t,
                 boost::json::error_code&) {
    stack_.push_string(s);
    return ValueDone();
  }

  bool on_number_part(boost::json::string_view s, boost::json::error_code&) {
    number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(int64_t i, boost::json::string_view, boost::json::error_code&) {
    number_.clear();
    stack_.push_int64(i);
    return ValueDone();
  }
  bool on_uint64(uint64_t u, boost::json::string_view,
                 boost::json::error_code&) {
    number_.clear();
    stack_.push_uint64(u);
    return ValueDone();
  }
  bool on_double(double d, boost::json::string_view s,
                 boost::json::error_code&) {
    // Boost.JSON 1.81 computes a double from more than 2^53 worth of digits
    // with one rounding too many (9007199254740991.0 becomes ...990), so
    // the literal is read again, correctly rounded. Out of range it stays
    // as Boost.JSON read it (infinity, or zero).
    number_.append(s.data(), s.size());
    double exact = 0;
    const char* end = number_.data() + number_.size();
    const std::from_chars_result read =
        std::from_chars(number_.data(), end, exact);
    if (read.ec == std::errc() && read.ptr == end) d = exact;
    number_.clear();
    stack_.push_double(d);
    return ValueDone();
  }
  bool on_bool(bool b, boost::json::error_code&) {
    stack_.push_bool(b);
    return ValueDone();
  }
  bool on_null(boost::json::error_code&) {
    stack_.push_null();
    return ValueDone();
  }

  // Comments are off in the parse options; these are never called.
  bool on_comment_part(boost::json::string_view, boost::json::error_code&) {
    return true;
  }
  bool on_comment(boost::json::string_view, boost::json::error_code&) {
    return true;
  }

 private:
  struct Frame {
    bool is_object = false;
    // Objects: the keys seen so far, and the one whose value is being read.
    std::unordered_set<std::string> keys;
    std::string key;
    // Arrays: the index of the element being read.
    size_t index = 0;
  };

  bool ValueDone() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
    return true;
  }

  // "data.items[2].name": the path of the value being read, in the form of
  // conversion problem paths.
  std::string CurrentPath() const {
    std::string path;
    for (const Frame& frame : frames_) {
      if (frame.is_object) {
        if (!path.empty()) path.push_back('.');
        path.append(frame.key);
      } else {
        absl::StrAppend(&path, "[", frame.index, "]");
      }
    }
    return path;
  }

  boost::json::value_stack stack_;
  std::vector<Frame> frames_;
  std::string key_;     // The key being read.
  std::string number_;  // The text of the number being read.
  bool found_duplicate_ = false;
  std::string duplicate_path_;
};

// `path` quoted for an error message: escaped, so that no control
// character reaches a log line, and cut to a bounded length.
std::string QuotePath(const std::string& path) {
  std::string escaped = absl::Utf8SafeCEscape(path);
  if (escaped.size() > kMaxQuotedPathBytes) {
    size_t cut = kMaxQuotedPathBytes;
    while (cut > 0 && (escaped[cut] & 0xC0) == 0x80) --cut;
    escaped.resize(cut);
    escaped.append("...");
  }
  return absl::StrCat("\"", escaped, "\"");
}

}  // namespace

absl::StatusOr<boost::json::value> ParseStrictJson(
    absl::string_view text, size_t max_depth, boost::json::storage_ptr storage) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::json::basic_parser<StrictHandler> parser(options, std::move(storage));
  boost::json::error_code ec;
  const size_t used =
      parser.write_some(/*more=*/false, text.data(), text.size(), ec);
  if (!ec && used < text.size()) {
    ec = boost::json::make_error_code(boost::json::error::extra_data);
  }
  if (ec) {
    if (parser.handler().found_duplicate()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "duplicate key ", QuotePath(parser.handler().duplicate_path()),
          ": a key may appear only once in an object"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("body is not valid JSON: ", ec.message()));
  }
  return parser.handler().Release();
}

}  // namespace fanout

// Access to the Staffify example deliveries kept in the project's examples/
// folder, for tests.

#ifndef FANOUT_TESTS_UTIL_EXAMPLES_H_
#define FANOUT_TESTS_UTIL_EXAMPLES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fanout::testing {

// Event types of the 18 examples, in file name order.
std::vector<std::string> ExampleEventTypes();

// Returns the body of examples/<event_type>.json, or NotFound.
absl::StatusOr<std::string> ReadExample(absl::string_view event_type);

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_EXAMPLES_H_

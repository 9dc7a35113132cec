#include "server/store/event_store.h"

#include "absl/strings/str_cat.h"

namespace fanout {

void RenderStoreMetrics(uint64_t duplicates, uint64_t differing_duplicates,
                        const LogRange* range, std::string* out) {
  absl::StrAppend(
      out,
      "# HELP fanout_duplicates_total Deliveries whose id was already "
      "stored.\n# TYPE fanout_duplicates_total counter\n"
      "fanout_duplicates_total ",
      duplicates,
      "\n# HELP fanout_differing_duplicates_total Duplicates whose body "
      "differed from the stored one.\n"
      "# TYPE fanout_differing_duplicates_total counter\n"
      "fanout_differing_duplicates_total ",
      differing_duplicates, "\n");
  if (range == nullptr) return;
  absl::StrAppend(
      out,
      "# HELP fanout_log_last_sequence Newest sequence in the log.\n"
      "# TYPE fanout_log_last_sequence gauge\nfanout_log_last_sequence ",
      range->last,
      "\n# HELP fanout_log_first_sequence Oldest retained sequence.\n"
      "# TYPE fanout_log_first_sequence gauge\nfanout_log_first_sequence ",
      range->first, "\n");
}

}  // namespace fanout

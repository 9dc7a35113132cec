#include "server/convert/event_json.h"

#include <google/protobuf/util/time_util.h>

#include <boost/json.hpp>

#include "server/convert/json_message.h"

namespace fanout {

using staffify::fanout::v1::Event;

boost::json::object EventToJson(const Event& event, bool include_raw_body) {
  using google::protobuf::util::TimeUtil;

  boost::json::object out;
  out["sequence"] = event.sequence();
  out["id"] = event.id();
  out["event"] = event.event_type();
  out["timestamp"] = TimeUtil::ToString(event.timestamp());
  out["receivedAt"] = TimeUtil::ToString(event.received_at());

  const google::protobuf::FieldDescriptor* payload =
      event.GetReflection()->GetOneofFieldDescriptor(
          event, Event::descriptor()->FindOneofByName("payload"));
  if (payload == nullptr) {
    out["data"] = boost::json::object();
  } else {
    out["data"] =
        MessageToJsonValue(event.GetReflection()->GetMessage(event, payload));
  }

  if (event.conversion_problems_size() > 0) {
    boost::json::array problems;
    for (const auto& problem : event.conversion_problems()) {
      problems.push_back(MessageToJsonObject(problem));
    }
    out["conversionProblems"] = std::move(problems);
  }
  if (include_raw_body) out["rawBody"] = event.raw_body();
  return out;
}

}  // namespace fanout

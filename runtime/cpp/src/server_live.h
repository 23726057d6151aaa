// The serving loop's state of one request (private to server*.cpp).
#pragma once

#include <memory>

#include "row.h"
#include "server.h"

namespace tinyllm {

struct Server::Live {
  uint64_t id = 0;
  std::shared_ptr<Request> request;
  Row row;
  GenerationConfig config;
  bool prepared = false;    // its Row is built (adapter slot, constraint) and cache looked up
  bool looked_up = false;   // the prefix cache was consulted (a hit or a counted miss)
  bool fill_cache = false;  // its prefill stores its task's prefix in the cache
  PrefixHit hit;            // its task's cached prefix, copied into its row at admission
  tinyllm_status status = TINYLLM_OK;  // a failure of this request alone while decoding
  std::string error;
  double deadline_at = 0;  // now_seconds() when its deadline passes (0: none yet)
  // The answer of a `result: context` task: the finished call row, its generation and
  // the call that ran (server_tools.cpp); this Live decodes the answer after them.
  std::shared_ptr<Row> called;
  Generation call_generation;
  std::optional<ToolCall> call;
};

}  // namespace tinyllm

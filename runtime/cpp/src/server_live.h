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
};

}  // namespace tinyllm

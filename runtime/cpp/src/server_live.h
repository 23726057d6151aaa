// The serving loop's state of one request (private to server*.cpp).
#pragma once

#include <memory>

#include "row.h"
#include "server.h"

namespace tinyllm {

struct Server::Live {
  std::shared_ptr<Request> request;
  Row row;
  GenerationConfig config;
  bool started = false;  // its Row is built and prefilled
};

}  // namespace tinyllm

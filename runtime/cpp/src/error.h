// LibError, the one exception type inside the library: a status code plus a message that says
// what was wrong and what to do. The C API turns it into a status and the thread's
// last-error message; nothing throws across that boundary.
#pragma once

#include <stdexcept>
#include <string>

#include "tinyllm/tinyllm.h"

namespace tinyllm {

class LibError : public std::runtime_error {
 public:
  LibError(tinyllm_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  tinyllm_status status() const { return status_; }

 private:
  tinyllm_status status_;
};

[[noreturn]] inline void fail(tinyllm_status status, const std::string& message) {
  throw LibError(status, message);
}

}  // namespace tinyllm

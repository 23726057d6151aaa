// A minimal test harness for the C++ unit tests: CHECK macros and a registry.
#pragma once

#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "error.h"

namespace check {

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

inline void report(const char* file, int line, const std::string& what) {
  ++failures();
  std::cerr << file << ":" << line << ": FAILED " << what << "\n";
}

}  // namespace check

#define TEST_CASE(name)                                            \
  static void name();                                              \
  static check::Register register_##name(#name, name);             \
  static void name()

#define CHECK(cond) \
  do { if (!(cond)) check::report(__FILE__, __LINE__, #cond); } while (0)

#define CHECK_EQ(a, b)                                                                   \
  do {                                                                                   \
    if (!((a) == (b))) check::report(__FILE__, __LINE__, #a " == " #b);                  \
  } while (0)

// The expression must throw tinyllm::LibError with `status` and a message containing `part`.
#define CHECK_FAILS(expr, want, part)                                                  \
  do {                                                                                   \
    try {                                                                                \
      (void)(expr);                                                                      \
      check::report(__FILE__, __LINE__, #expr " did not throw");                         \
    } catch (const tinyllm::LibError& e) {                                               \
      if (e.status() != (want) || std::string(e.what()).find(part) == std::string::npos) \
        check::report(__FILE__, __LINE__, #expr " threw: " + std::string(e.what()));     \
    }                                                                                    \
  } while (0)

// Runs every TEST_CASE; prints "N passed, N failed" (each case passes when all its checks do).
#include "check.h"

int main() {
  int passed = 0, failed = 0;
  for (const check::Case& c : check::registry()) {
    int before = check::failures();
    try {
      c.body();
    } catch (const std::exception& e) {
      check::report(c.name, 0, std::string("unexpected exception: ") + e.what());
    }
    if (check::failures() == before) {
      ++passed;
    } else {
      ++failed;
      std::cerr << "case " << c.name << " failed\n";
    }
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

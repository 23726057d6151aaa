// SHA-256 (FIPS 180-4), for checking bundle files against their manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tinyllm {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes the hash

 private:
  void block(const unsigned char* p);
  uint32_t h_[8];
  unsigned char buffer_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

std::string sha256_hex(std::string_view data);

// sha256 of a file's contents, read in chunks; throws tinyllm::LibError if unreadable.
std::string sha256_file(const std::string& path);

}  // namespace tinyllm

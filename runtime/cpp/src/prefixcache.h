// The per-task prefix cache (runtime/prefixcache.py): the KV of the prompt tokens every
// request of a task starts with, keyed by (task, adapter slot). A request whose prompt
// starts with n of the cached ids gets their KV copied into its row and prefills only the
// rest: exact, since a causal model's KV at a position depends only on the tokens up to
// it. Entries are filled from a request's own prefill, bounded in bytes, evicted least
// recently used; entries are shared and never changed, so one in use survives eviction.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tinyllm {

struct CachedPrefix {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> kv;  // per KV buffer, [KV heads, ids.size(), head_dim]
  size_t bytes() const;
};

struct PrefixHit {
  std::shared_ptr<const CachedPrefix> entry;
  size_t length = 0;  // leading prompt tokens the entry covers (its KV's first positions)
};

struct PrefixCacheStats {
  size_t entries = 0, bytes = 0, max_bytes = 0;
  uint64_t hits = 0, misses = 0, tokens_saved = 0;
};

class PrefixCache {
 public:
  using Key = std::pair<std::string, int64_t>;  // (task, adapter slot)
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The entry of `key` and how much of `prompt` it covers (at least one prompt token is
  // left to prefill: it gives the first logits); no entry when nothing is covered.
  PrefixHit lookup(const Key& key, const std::vector<int32_t>& prompt, size_t prefix_len);
  // Whether a request with this key should fill the cache from its prefill.
  bool wants(const Key& key, size_t prefix_len) const;
  // Keep `entry` for `key`, evicting the least recently used to stay within max_bytes.
  void store(const Key& key, CachedPrefix entry);
  PrefixCacheStats stats() const;
  // Count a miss of a request that filled the cache without a lookup (none was held).
  void count_miss() { ++misses_; }

 private:
  size_t max_bytes_, bytes_ = 0;
  std::list<Key> order_;  // least recently used first
  std::map<Key, std::pair<std::shared_ptr<const CachedPrefix>, std::list<Key>::iterator>> entries_;
  uint64_t hits_ = 0, misses_ = 0, tokens_saved_ = 0;
};

}  // namespace tinyllm

#include "prefixcache.h"

#include <algorithm>

#include "tasks.h"

namespace tinyllm {

size_t CachedPrefix::bytes() const {
  size_t n = 0;
  for (const auto& part : kv) n += part.size() * sizeof(float);
  return n;
}

PrefixHit PrefixCache::lookup(const Key& key, const std::vector<int32_t>& prompt, size_t prefix_len) {
  if (max_bytes_ == 0 || prefix_len == 0) return {};
  auto it = entries_.find(key);
  size_t n = 0;
  if (it != entries_.end() && !prompt.empty())
    n = std::min(common_prefix(it->second.first->ids, prompt), prompt.size() - 1);
  if (n == 0) {
    ++misses_;
    return {};
  }
  order_.splice(order_.end(), order_, it->second.second);
  ++hits_;
  tokens_saved_ += n;
  return {it->second.first, n};
}

bool PrefixCache::wants(const Key& key, size_t prefix_len) const {
  return max_bytes_ > 0 && prefix_len > 0 && !entries_.count(key);
}

void PrefixCache::store(const Key& key, CachedPrefix entry) {
  size_t size = entry.bytes();
  if (size > max_bytes_) return;
  if (auto it = entries_.find(key); it != entries_.end()) {
    bytes_ -= it->second.first->bytes();
    order_.erase(it->second.second);
    entries_.erase(it);
  }
  while (!order_.empty() && bytes_ + size > max_bytes_) {
    auto victim = entries_.find(order_.front());
    bytes_ -= victim->second.first->bytes();
    entries_.erase(victim);
    order_.pop_front();
  }
  order_.push_back(key);
  entries_[key] = {std::make_shared<const CachedPrefix>(std::move(entry)), std::prev(order_.end())};
  bytes_ += size;
}

PrefixCacheStats PrefixCache::stats() const {
  return {entries_.size(), bytes_, max_bytes_, hits_, misses_, tokens_saved_};
}

}  // namespace tinyllm

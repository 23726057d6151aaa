#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace tinyllm {
namespace {

constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd,
                   kMultB = 0x58f38ded, kMixL = 0xca01f9dd, kMixR = 0x4973f715;
constexpr size_t kPool = 4;

// numpy's SeedSequence(seed).generate_state(4, uint64).
void seed_words(uint64_t seed, uint64_t out[4]) {
  std::vector<uint32_t> entropy{static_cast<uint32_t>(seed)};
  if (seed >> 32) entropy.push_back(static_cast<uint32_t>(seed >> 32));
  uint32_t hash = kInitA;
  auto hashmix = [&hash](uint32_t v) {
    v ^= hash;
    hash *= kMultA;
    v *= hash;
    return v ^ (v >> 16);
  };
  auto mix = [](uint32_t x, uint32_t y) {
    uint32_t r = kMixL * x - kMixR * y;
    return r ^ (r >> 16);
  };
  uint32_t pool[kPool];
  for (size_t i = 0; i < kPool; ++i) pool[i] = hashmix(i < entropy.size() ? entropy[i] : 0);
  for (size_t src = 0; src < kPool; ++src)
    for (size_t dst = 0; dst < kPool; ++dst)
      if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
  uint32_t hash_b = kInitB;
  uint32_t words[2 * kPool];
  for (size_t i = 0; i < 2 * kPool; ++i) {
    uint32_t v = pool[i % kPool] ^ hash_b;
    hash_b *= kMultB;
    v *= hash_b;
    words[i] = v ^ (v >> 16);
  }
  for (size_t i = 0; i < 4; ++i) out[i] = words[2 * i] | (static_cast<uint64_t>(words[2 * i + 1]) << 32);
}

using u128 = uint128;
constexpr u128 kMultiplier = (static_cast<u128>(0x2360ED051FC65DA4ULL) << 64) | 0x4385DF649FCCF645ULL;

}  // namespace

Pcg64::Pcg64(uint64_t seed) {
  uint64_t w[4];
  seed_words(seed, w);
  u128 initstate = (static_cast<u128>(w[0]) << 64) | w[1];
  u128 initseq = (static_cast<u128>(w[2]) << 64) | w[3];
  inc_ = (initseq << 1) | 1;
  state_ = 0;
  step();
  state_ += initstate;
  step();
}

void Pcg64::step() { state_ = state_ * kMultiplier + inc_; }

uint64_t Pcg64::next64() {
  step();
  uint64_t hi = static_cast<uint64_t>(state_ >> 64), lo = static_cast<uint64_t>(state_);
  uint64_t x = hi ^ lo;
  unsigned rot = static_cast<unsigned>(hi >> 58);
  return (x >> rot) | (x << ((64 - rot) & 63));
}

double Pcg64::next_double() { return static_cast<double>(next64() >> 11) * (1.0 / 9007199254740992.0); }

double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

int32_t argmax(const float* logits, size_t n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

int32_t sample(const float* logits, size_t n, const SamplingParams& params, Pcg64& rng) {
  if (params.temperature == 0) return argmax(logits, n);
  std::vector<double> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<double>(logits[i]) / params.temperature;
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
    std::vector<double> copy = p;
    auto kth_it = copy.begin() + (n - params.top_k);
    std::nth_element(copy.begin(), kth_it, copy.end());
    double kth = *kth_it;
    for (double& v : p)
      if (v < kth) v = -std::numeric_limits<double>::infinity();
  }
  double top = *std::max_element(p.begin(), p.end());
  for (double& v : p) v = std::exp(v - top);
  double total = pairwise_sum(p.data(), n);
  for (double& v : p) v /= total;
  if (params.top_p < 1.0) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    double cumulative = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cumulative += p[order[i]];
      if (cumulative >= params.top_p) {  // searchsorted(cumsum, top_p, side="left") + 1
        keep = i + 1;
        break;
      }
    }
    std::vector<double> masked(n, 0.0);
    for (size_t i = 0; i < keep; ++i) masked[order[i]] = p[order[i]];
    double kept = pairwise_sum(masked.data(), n);
    for (size_t i = 0; i < n; ++i) p[i] = masked[i] / kept;
  }
  // Generator.choice(n, p=p): cdf = cumsum(p) / cdf[-1]; searchsorted(cdf, u, "right").
  for (size_t i = 1; i < n; ++i) p[i] += p[i - 1];
  double last = p[n - 1];
  for (double& v : p) v /= last;
  double u = rng.next_double();
  return static_cast<int32_t>(std::upper_bound(p.begin(), p.end(), u) - p.begin());
}

}  // namespace tinyllm

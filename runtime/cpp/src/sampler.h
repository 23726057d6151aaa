// Choosing the next token: greedy, or temperature / top-k / top-p with a seed. The
// random stream and the arithmetic follow the Python engine's numpy code (PCG64 seeded
// through numpy's SeedSequence, float64 probabilities, pairwise sums, cdf search), so a
// seed gives the same tokens in both runtimes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tinyllm {

__extension__ typedef unsigned __int128 uint128;

// numpy.random.default_rng(seed): PCG64 (XSL-RR 128/64) seeded by SeedSequence(seed).
class Pcg64 {
 public:
  explicit Pcg64(uint64_t seed);
  uint64_t next64();
  double next_double();  // Generator.random(): 53 random bits in [0, 1)

 private:
  void step();
  uint128 state_ = 0, inc_ = 0;
};

struct SamplingParams {
  double temperature = 0;  // 0: greedy
  int32_t top_k = 0;
  double top_p = 1.0;
};

// Index of the first largest logit (numpy.argmax).
int32_t argmax(const float* logits, size_t n);

// One token id from `logits` [n].
int32_t sample(const float* logits, size_t n, const SamplingParams& params, Pcg64& rng);

// numpy's pairwise summation of float64 (np.sum on a contiguous array).
double pairwise_sum(const double* a, size_t n);

}  // namespace tinyllm

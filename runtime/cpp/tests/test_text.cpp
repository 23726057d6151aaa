// UTF-8, sha256, pre-tokenizer patterns, pairwise sums, safetensors headers, bundle paths.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bundle.h"
#include "check.h"
#include "pretokenizer.h"
#include "safetensors.h"
#include "sampler.h"
#include "sha256.h"
#include "unicode.h"
#include "utf8.h"

namespace {

std::vector<std::string> pieces(const std::string& text, tinyllm::SplitPattern p) {
  std::vector<std::string> out;
  for (const auto& piece : tinyllm::split_pattern(text, p)) out.push_back(text.substr(piece.begin, piece.end - piece.begin));
  return out;
}

std::string temp_file(const std::string& name, const std::string& bytes) {
  std::string path = "/tmp/tinyllm-unit-" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string safetensors(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + std::string(data_bytes, '\0');
}

}  // namespace

TEST_CASE(utf8_validation) {
  CHECK(tinyllm::utf8::valid("h\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80"));
  CHECK_EQ(tinyllm::utf8::valid_prefix("ab\xC0\x80"), 2u);       // overlong
  CHECK_EQ(tinyllm::utf8::valid_prefix("a\xED\xA0\x80"), 1u);    // surrogate
  CHECK_EQ(tinyllm::utf8::valid_prefix("\xF4\x90\x80\x80"), 0u); // above U+10FFFF
  CHECK_EQ(tinyllm::utf8::valid_prefix("ok\xE4\xB8"), 2u);       // truncated
}

TEST_CASE(utf8_lossy_replaces_maximal_subparts) {
  using tinyllm::utf8::decode_lossy;
  const std::string r = "\xEF\xBF\xBD";
  CHECK_EQ(decode_lossy("a\xE4\xB8" "b"), "a" + r + "b");        // one U+FFFD for a cut sequence
  CHECK_EQ(decode_lossy("\xC0\x80"), r + r);                     // C0 is never valid: two
  CHECK_EQ(decode_lossy("\xED\xA0\x80"), r + r + r);             // surrogate bytes: three
  CHECK_EQ(decode_lossy("\xF0\x9F\x98"), r);                     // incomplete at the end: one
  CHECK_EQ(decode_lossy("\xFF" "a"), r + "a");
}

TEST_CASE(utf8_stream_holds_back_incomplete_sequences) {
  tinyllm::utf8::LossyDecoder d;
  std::string out;
  d.push("a\xF0\x9F", out);
  CHECK_EQ(out, "a");
  CHECK(d.waiting());
  d.push("\x98", out);
  CHECK_EQ(out, "a");
  d.push("\x80z", out);
  CHECK_EQ(out, "a\xF0\x9F\x98\x80z");
  d.push("\xE4", out);
  d.finish(out);
  CHECK_EQ(out, "a\xF0\x9F\x98\x80z\xEF\xBF\xBD");
}

TEST_CASE(sha256_known_vectors) {
  CHECK_EQ(tinyllm::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK_EQ(tinyllm::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_EQ(tinyllm::sha256_hex(std::string(1000000, 'a')),
           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  tinyllm::Sha256 pieces;  // fed in odd-sized pieces, the digest is the same
  std::string text(1000, 'x');
  for (size_t i = 0; i < text.size(); i += 7) pieces.update(text.data() + i, std::min<size_t>(7, text.size() - i));
  CHECK_EQ(pieces.hex_digest(), tinyllm::sha256_hex(text));
}

TEST_CASE(gpt2_pattern) {
  using tinyllm::SplitPattern;
  std::vector<std::string> want = {"Hello", ",", " world", "'s", "  ", " 123", "!!", "\n"};
  CHECK(pieces("Hello, world's   123!!\n", SplitPattern::Gpt2) == want);
  want = {"a", " ", " b"};
  CHECK(pieces("a  b", SplitPattern::Gpt2) == want);
}

TEST_CASE(qwen2_pattern) {
  using tinyllm::SplitPattern;
  std::vector<std::string> want = {"Hello", ",", " world", "'S", " ", "1", "2", "3", "!!\n\n", " x"};
  CHECK(pieces("Hello, world'S 123!!\n\n x", SplitPattern::Qwen2) == want);
  want = {"123", "4"};
  CHECK(pieces("1234", SplitPattern::Llama3) == want);
}

TEST_CASE(pairwise_sum_matches_numpy_blocking) {
  std::vector<double> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 1.0 / static_cast<double>(i + 1);
  double naive = 0;
  for (double v : a) naive += v;
  double pw = tinyllm::pairwise_sum(a.data(), a.size());
  CHECK(std::abs(pw - naive) < 1e-12);
  CHECK_EQ(tinyllm::pairwise_sum(a.data(), 5), a[0] + a[1] + a[2] + a[3] + a[4]);
}

TEST_CASE(safetensors_header_checks) {
  std::string ok = R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})";
  auto st = tinyllm::SafeTensors::open(temp_file("ok.safetensors", safetensors(ok, 16)));
  CHECK_EQ(st.read_float("w").size(), 4u);
  CHECK_FAILS(tinyllm::SafeTensors::open(temp_file("short.safetensors", safetensors(ok, 8))), TINYLLM_BUNDLE_ERROR,
              "outside the file");
  std::string bad_size = R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})";
  CHECK_FAILS(tinyllm::SafeTensors::open(temp_file("size.safetensors", safetensors(bad_size, 16))),
              TINYLLM_BUNDLE_ERROR, "does not match its shape");
  CHECK_FAILS(tinyllm::SafeTensors::open(temp_file("tiny.safetensors", "abc")), TINYLLM_BUNDLE_ERROR, "truncated");
  CHECK_FAILS(tinyllm::SafeTensors::open(temp_file("huge.safetensors", std::string(8, '\x7f') + "{}")),
              TINYLLM_BUNDLE_ERROR, "does not fit the file");
}

TEST_CASE(bundle_paths_stay_inside) {
  tinyllm::check_relative_path("engines/a/model.onnx", "m");
  CHECK_FAILS(tinyllm::check_relative_path("../x", "m"), TINYLLM_BUNDLE_ERROR, "inside the bundle");
  CHECK_FAILS(tinyllm::check_relative_path("a/../../x", "m"), TINYLLM_BUNDLE_ERROR, "inside the bundle");
  CHECK_FAILS(tinyllm::check_relative_path("/etc/passwd", "m"), TINYLLM_BUNDLE_ERROR, "inside the bundle");
  CHECK_FAILS(tinyllm::check_relative_path("a\\b", "m"), TINYLLM_BUNDLE_ERROR, "inside the bundle");
  CHECK_FAILS(tinyllm::check_relative_path("", "m"), TINYLLM_BUNDLE_ERROR, "inside the bundle");
}

TEST_CASE(nfc_composes_reorders_and_keeps_exclusions) {
  using tinyllm::unicode::nfc;
  CHECK_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                          // e + U+0301 -> é
  CHECK_EQ(nfc("a\xCC\x81\xCC\x96"), "\xC3\xA1\xCC\x96");           // reordered, then composed
  CHECK_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> U+AC01
  CHECK_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                        // U+212B ANGSTROM -> Å
  CHECK_EQ(nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");        // U+0958 stays decomposed
  CHECK_EQ(nfc("plain ascii"), "plain ascii");
  CHECK_EQ(tinyllm::unicode::combining_class(0x301), 230);
  CHECK_EQ(tinyllm::unicode::combining_class('a'), 0);
}

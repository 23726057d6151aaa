// Byte-level BPE from a tokenizer.json, with the same ids as the tokenizers library:
// added tokens split first (leftmost-longest), the normalizer (none, or NFC), the
// pre-tokenizer, then BPE merges by rank. Decoding follows tokenizers' ByteLevel decoder (lossy UTF-8 over the bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pretokenizer.h"
#include "utf8.h"

namespace tinyllm {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool normalized;
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json file, or a folder holding tokenizer.json and optionally
  // tokenizer_config.json (for eos_token and pad_token).
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // From tokenizer.json text; `config` is tokenizer_config.json text or empty.
  static std::unique_ptr<Tokenizer> from_json(std::string_view text, std::string_view config,
                                              const std::string& where);

  // Token ids of `text` (valid UTF-8, else TINYLLM_TOKENIZER_ERROR); no special tokens added.
  std::vector<int32_t> encode(std::string_view text) const;
  // Text of `ids`. Unknown ids are skipped, as tokenizers does; negative ids are errors.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
  // The bytes one id contributes to decoded text (empty for a skipped special token).
  std::string token_bytes(int32_t id, bool skip_special) const;

  // -1 when unknown.
  int32_t token_to_id(std::string_view token) const;
  size_t vocab_size() const { return vocab_size_; }
  int32_t eos_token_id() const { return eos_id_; }  // -1: none
  int32_t pad_token_id() const { return pad_id_; }  // the engine's padding id

 private:
  void load_model(const json::Value& model, const std::string& where);
  void load_added(const json::Value& added, const std::string& where);
  void load_config(std::string_view config, const std::string& where);
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  struct Symbol {  // one token of a word during BPE, linked to its neighbours
    int32_t id;
    int prev, next;
    size_t len;  // bytes; 0 once merged into its left neighbour
  };
  void bpe(const std::string& word, std::vector<int32_t>& out) const;
  void merge(std::vector<Symbol>& symbols) const;
  // Split on added tokens of one kind (normalized or not): (text, added id or -1) spans.
  void split_added(std::string_view text, bool normalized,
                   std::vector<std::pair<std::string_view, int32_t>>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<const std::string*> id_to_token_;  // model vocabulary, by id
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;  // pair -> (rank, id)
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  PreTokenizer pre_;
  bool ignore_merges_ = false;
  bool nfc_ = false;  // the NFC normalizer
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  size_t vocab_size_ = 0;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = 0;
};

// Incremental decoding for streams (see tinyllm_text_stream in tinyllm.h).
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, bool skip_special)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  // Text completed by one more id.
  std::string push(int32_t id);
  // What an incomplete tail decodes to at the end.
  std::string finish();
  bool waiting() const { return decoder_.waiting(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  utf8::LossyDecoder decoder_;
};

}  // namespace tinyllm

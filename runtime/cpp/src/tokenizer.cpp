#include "tokenizer.h"

#include <array>
#include <fstream>
#include <queue>
#include <sstream>
#include <sys/stat.h>

#include "error.h"
#include "json.h"
#include "unicode.h"

namespace tinyllm {
namespace {

// GPT-2's reversible map between bytes and printable code points.
struct ByteMap {
  std::array<uint32_t, 256> to_char{};
  std::unordered_map<uint32_t, uint8_t> to_byte;
  std::array<std::string, 256> utf8;  // to_char as UTF-8

  ByteMap() {
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_char[b] = printable ? b : 256 + extra++;
      to_byte[to_char[b]] = static_cast<uint8_t>(b);
      utf8::append(utf8[b], to_char[b]);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

std::string read_file(const std::string& path, tinyllm_status status) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(status, path + ": cannot open the file");
  std::ostringstream s;
  s << f.rdbuf();
  if (f.bad()) fail(status, path + ": read error");
  return s.str();
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

void require_null_or(const json::Value& root, const char* key, const char* allowed,
                     const std::string& where) {
  const json::Value* v = root.find(key);
  if (v == nullptr || v->is_null()) return;
  const std::string& type = v->at("type", where + "." + key).as_string(where + "." + key + ".type");
  if (allowed == nullptr || type != allowed)
    fail(TINYLLM_UNSUPPORTED, where + ": " + key + " of type \"" + type +
                                  "\" is not supported by this library yet");
}

const std::string* token_text(const json::Value* v) {
  if (v == nullptr) return nullptr;
  if (v->is_string()) return &v->as_string("");
  if (v->is_object())
    if (const json::Value* c = v->find("content"); c && c->is_string()) return &c->as_string("");
  return nullptr;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::string file = path, config;
  if (is_dir(path)) {
    file = path + "/tokenizer.json";
    if (is_file(path + "/tokenizer_config.json"))
      config = read_file(path + "/tokenizer_config.json", TINYLLM_TOKENIZER_ERROR);
  }
  if (!is_file(file)) fail(TINYLLM_TOKENIZER_ERROR, file + ": no tokenizer.json there");
  return from_json(read_file(file, TINYLLM_TOKENIZER_ERROR), config, file);
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(std::string_view text, std::string_view config,
                                                const std::string& where) {
  json::Value root = json::parse(text, where, TINYLLM_TOKENIZER_ERROR);
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  require_null_or(root, "normalizer", "NFC", where);
  if (const json::Value* n = root.find("normalizer"); n && !n->is_null()) tok->nfc_ = true;
  require_null_or(root, "decoder", "ByteLevel", where);
  tok->load_model(root.at("model", where), where + ": model");
  if (const json::Value* added = root.find("added_tokens")) tok->load_added(*added, where);
  const json::Value* pre = root.find("pre_tokenizer");
  tok->pre_ = pre ? PreTokenizer::from_json(*pre, where + ": pre_tokenizer") : PreTokenizer();
  const json::Value* decoder = root.find("decoder");
  if (!tok->pre_.byte_level() || decoder == nullptr || decoder->is_null())
    fail(TINYLLM_UNSUPPORTED, where + ": only byte-level BPE tokenizers (a ByteLevel "
                                      "pre-tokenizer and decoder) are supported");
  tok->load_config(config, where);
  return tok;
}

void Tokenizer::load_model(const json::Value& model, const std::string& where) {
  if (model.at("type", where).as_string(where + ".type") != "BPE")
    fail(TINYLLM_UNSUPPORTED, where + ": only BPE models are supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model.find(key);
    if (v && !v->is_null() && !v->as_string(where + "." + key).empty())
      fail(TINYLLM_UNSUPPORTED, where + ": " + key + " is not supported");
  }
  if (const json::Value* v = model.find("byte_fallback"); v && v->as_bool(where))
    fail(TINYLLM_UNSUPPORTED, where + ": byte_fallback is not supported");
  if (const json::Value* v = model.find("dropout"); v && !v->is_null() && v->as_number(where) != 0)
    fail(TINYLLM_UNSUPPORTED, where + ": BPE dropout is not supported");
  if (const json::Value* v = model.find("ignore_merges")) ignore_merges_ = v->as_bool(where);
  if (const json::Value* v = model.find("fuse_unk"); v && !v->is_null()) fuse_unk_ = v->as_bool(where);
  for (const auto& [token, id] : model.at("vocab", where).as_object(where + ".vocab")) {
    int64_t i = id.as_int(where + ".vocab[" + token + "]");
    if (i < 0 || i > INT32_MAX) fail(TINYLLM_TOKENIZER_ERROR, where + ": bad id for " + token);
    auto [it, fresh] = vocab_.emplace(token, static_cast<int32_t>(i));
    if (!fresh) continue;
    if (id_to_token_.size() <= static_cast<size_t>(i)) id_to_token_.resize(i + 1, nullptr);
    id_to_token_[i] = &it->first;
  }
  const auto& merges = model.at("merges", where).as_array(where + ".merges");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string label = where + ".merges[" + std::to_string(rank) + "]";
    std::string a, b;
    if (merges[rank].is_string()) {  // the older "a b" form
      const std::string& s = merges[rank].as_string(label);
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        fail(TINYLLM_TOKENIZER_ERROR, label + ": a merge must be two tokens");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      const auto& pair = merges[rank].as_array(label);
      if (pair.size() != 2) fail(TINYLLM_TOKENIZER_ERROR, label + ": a merge must be two tokens");
      a = pair[0].as_string(label);
      b = pair[1].as_string(label);
    }
    int32_t ia = token_to_id(a), ib = token_to_id(b), merged = token_to_id(a + b);
    if (ia < 0 || ib < 0 || merged < 0)
      fail(TINYLLM_TOKENIZER_ERROR, label + ": merge of tokens outside the vocabulary");
    merges_[pair_key(ia, ib)] = {static_cast<uint32_t>(rank), merged};
  }
  if (const json::Value* unk = model.find("unk_token"); unk && !unk->is_null()) {
    unk_id_ = token_to_id(unk->as_string(where + ".unk_token"));
    if (unk_id_ < 0) fail(TINYLLM_TOKENIZER_ERROR, where + ": unk_token is not in the vocabulary");
  }
}

void Tokenizer::load_added(const json::Value& added, const std::string& where) {
  const auto& items = added.as_array(where + ": added_tokens");
  for (size_t i = 0; i < items.size(); ++i) {
    std::string label = where + ": added_tokens[" + std::to_string(i) + "]";
    const json::Value& t = items[i];
    for (const char* flag : {"single_word", "lstrip", "rstrip"})
      if (const json::Value* v = t.find(flag); v && v->as_bool(label))
        fail(TINYLLM_UNSUPPORTED, label + ": added tokens with " + flag + " are not supported");
    AddedToken token{};
    int64_t id = t.at("id", label).as_int(label + ".id");
    if (id < 0 || id > INT32_MAX) fail(TINYLLM_TOKENIZER_ERROR, label + ": bad id");
    token.id = static_cast<int32_t>(id);
    token.content = t.at("content", label).as_string(label + ".content");
    if (token.content.empty()) fail(TINYLLM_TOKENIZER_ERROR, label + ": empty content");
    const json::Value* special = t.find("special");
    token.special = special && special->as_bool(label);
    const json::Value* normalized = t.find("normalized");
    token.normalized = normalized ? normalized->as_bool(label) : !token.special;
    added_by_id_[token.id] = added_.size();
    added_.push_back(std::move(token));
  }
}

void Tokenizer::load_config(std::string_view config, const std::string& where) {
  vocab_size_ = vocab_.size();
  for (const AddedToken& t : added_)
    if (!vocab_.count(t.content)) ++vocab_size_;
  int32_t pad = -1;
  if (!config.empty()) {
    json::Value c = json::parse(config, where + " (tokenizer_config.json)", TINYLLM_TOKENIZER_ERROR);
    if (const std::string* eos = token_text(c.find("eos_token"))) eos_id_ = token_to_id(*eos);
    if (const std::string* p = token_text(c.find("pad_token"))) pad = token_to_id(*p);
  }
  // As the Python engine: a padding id of 0 counts as unset, then the eos id, then 0.
  pad_id_ = pad > 0 ? pad : (eos_id_ > 0 ? eos_id_ : 0);
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& t : added_)
    if (t.content == token) return t.id;
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

void Tokenizer::split_added(std::string_view text, bool normalized,
                            std::vector<std::pair<std::string_view, int32_t>>& out) const {
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* best = nullptr;
    for (const AddedToken& t : added_) {
      if (t.normalized != normalized || t.content.size() > text.size() - pos) continue;
      if (text.compare(pos, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size()))
        best = &t;
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    if (pos > start) out.emplace_back(text.substr(start, pos - start), -1);
    out.emplace_back(text.substr(pos, best->content.size()), best->id);
    pos += best->content.size();
    start = pos;
  }
  if (start < text.size()) out.emplace_back(text.substr(start), -1);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  size_t valid = utf8::valid_prefix(text);
  if (valid != text.size())
    fail(TINYLLM_TOKENIZER_ERROR, "the text is not valid UTF-8 (bad byte at offset " +
                                      std::to_string(valid) + "); pass UTF-8 text");
  // As tokenizers: added tokens that are not normalized split the raw text first; the
  // rest is normalized, split on the normalized added tokens, then pre-tokenized.
  std::vector<std::pair<std::string_view, int32_t>> first;
  split_added(text, false, first);
  std::vector<int32_t> ids;
  for (const auto& [span, id] : first) {
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    std::string normalized = nfc_ ? unicode::nfc(span) : std::string(span);
    std::vector<std::pair<std::string_view, int32_t>> second;
    split_added(normalized, true, second);
    for (const auto& [piece, added] : second) {
      if (added >= 0) ids.push_back(added);
      else encode_segment(piece, ids);
    }
  }
  return ids;
}

void Tokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  const ByteMap& map = byte_map();
  for (const std::string& piece : pre_.split(text)) {
    std::string word;
    for (unsigned char b : piece) word += map.utf8[b];
    bpe(word, out);
  }
}

void Tokenizer::bpe(const std::string& word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> symbols;
  int32_t unk = -1;
  size_t unk_len = 0;
  auto add = [&](int32_t id, size_t len) {
    int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, len});
  };
  size_t pos = 0;
  while (pos < word.size()) {
    size_t start = pos;
    utf8::next(word, pos);
    auto it = vocab_.find(word.substr(start, pos - start));
    if (it != vocab_.end()) {
      if (unk >= 0) add(unk, unk_len), unk = -1;
      add(it->second, pos - start);
    } else if (unk_id_ >= 0) {  // as tokenizers: unknown pieces become unk (fused or not)
      if (unk >= 0 && fuse_unk_) {
        unk_len += pos - start;
      } else {
        if (unk >= 0) add(unk, unk_len);
        unk = unk_id_;
        unk_len = pos - start;
      }
    }  // without an unk token the piece is dropped, as tokenizers does
  }
  if (unk >= 0) add(unk, unk_len);
  if (symbols.empty()) return;
  symbols.back().next = -1;
  merge(symbols);
  for (const Symbol& s : symbols)
    if (s.len != 0) out.push_back(s.id);
}

// tokenizers' Word::merge_all: a queue of candidate merges, lowest rank first, then
// leftmost; an entry whose pair has changed since it was queued is skipped.
void Tokenizer::merge(std::vector<Symbol>& symbols) const {
  struct Merge {
    uint32_t rank;
    size_t pos;
    int32_t id;
  };
  auto later = [](const Merge& a, const Merge& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(later);
  auto lookup = [&](int32_t a, int32_t b) {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (auto m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push({m->first, i, m->second});
  while (!queue.empty()) {
    Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    Symbol right = symbols[cur.next];
    auto m = lookup(cur.id, right.id);
    if (m == nullptr || m->second != top.id) continue;
    symbols[cur.next].len = 0;
    cur.id = top.id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int>(top.pos);
    if (cur.prev >= 0)
      if (auto p = lookup(symbols[cur.prev].id, cur.id))
        queue.push({p->first, static_cast<size_t>(cur.prev), p->second});
    if (cur.next >= 0)
      if (auto n = lookup(cur.id, symbols[cur.next].id)) queue.push({n->first, top.pos, n->second});
  }
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0) fail(TINYLLM_TOKENIZER_ERROR, "token id " + std::to_string(id) + " is negative");
  const std::string* token = nullptr;
  if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
    const AddedToken& t = added_[it->second];
    token = &t.content;
  } else if (static_cast<size_t>(id) < id_to_token_.size()) {
    token = id_to_token_[id];
  }
  if (token == nullptr) return {};  // unknown ids decode to nothing, as in tokenizers
  if (skip_special)
    for (const AddedToken& t : added_)
      if (t.special && t.content == *token) return {};
  // ByteLevel decoder: map each char back to its byte; a token with a char outside the
  // map contributes its own UTF-8 bytes instead.
  const ByteMap& map = byte_map();
  std::string bytes;
  size_t pos = 0;
  while (pos < token->size()) {
    auto it = map.to_byte.find(utf8::next(*token, pos));
    if (it == map.to_byte.end()) return *token;
    bytes += static_cast<char>(it->second);
  }
  return bytes;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_bytes(id, skip_special);
  return utf8::decode_lossy(bytes);
}

std::string TextStream::push(int32_t id) {
  std::string out;
  decoder_.push(tokenizer_.token_bytes(id, skip_special_), out);
  return out;
}

std::string TextStream::finish() {
  std::string out;
  decoder_.finish(out);
  return out;
}

}  // namespace tinyllm

#include "taskoutput.h"

#include <regex>
#include <set>

#include "error.h"
#include "schema.h"
#include "unicode.h"
#include "utf8.h"

namespace tinyllm {
namespace {

// Python's str.isspace: White_Space plus the information separators U+001C..U+001F.
bool py_space(uint32_t cp) { return unicode::is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Python's line boundaries (str.splitlines).
bool line_break(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 ||
         cp == 0x2028 || cp == 0x2029;
}

// Bytes of leading characters of `s` in `set` (a predicate).
template <typename Pred>
size_t lead(const std::string& s, Pred in) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t at = pos;
    if (!in(utf8::next(s, pos))) return at;
  }
  return pos;
}

template <typename Pred>
size_t trail(const std::string& s, Pred in) {  // byte length kept after stripping the end
  size_t pos = 0, keep = 0;
  while (pos < s.size())
    if (!in(utf8::next(s, pos))) keep = pos;
  return keep;
}

std::string lower_ascii(std::string s) {  // casefold, for ASCII letters
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Python's repr of a str, for messages (single quotes unless the text holds one).
std::string repr(const std::string& s) {
  char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out + q;
}

std::string prefix_chars(const std::string& s, size_t n) {  // s[:n] in code points
  size_t pos = 0;
  for (size_t i = 0; i < n && pos < s.size(); ++i) utf8::next(s, pos);
  return s.substr(0, pos);
}

std::string label_list(const std::vector<std::string>& labels) {
  std::string out = "[";
  for (size_t i = 0; i < labels.size(); ++i) out += (i ? ", " : "") + repr(labels[i]);
  return out + "]";
}

std::string label_of(const TaskEntry& task, const std::string& first) {
  std::string candidate = first.substr(0, trail(first, [](uint32_t c) { return c == '.' || c == '!'; }));
  candidate = strip(candidate);
  for (const std::string& label : task.labels)
    if (lower_ascii(candidate) == lower_ascii(label)) return label;
  std::set<std::string> words;  // re.findall(r"[\w-]+", first.casefold())
  std::string folded = lower_ascii(first), word;
  size_t pos = 0;
  while (pos <= folded.size()) {
    size_t at = pos;
    uint32_t cp = pos < folded.size() ? utf8::next(folded, pos) : (++pos, 0);
    if (cp && (cp == '_' || cp == '-' || unicode::is_letter(cp) || unicode::is_number(cp))) {
      word += folded.substr(at, pos - at);
    } else if (!word.empty()) {
      words.insert(word);
      word.clear();
    }
  }
  std::vector<std::string> named;
  for (const std::string& label : task.labels)
    if (words.count(lower_ascii(label))) named.push_back(label);
  return named.size() == 1 ? named[0] : candidate;
}

// verifiers.parse_json_output: the text, or the inside of a Markdown code fence.
std::string json_text(const std::string& answer) {
  std::string s = strip(answer);
  static const std::regex fence(R"(^```(?:json)?\s*([\s\S]*?)\s*```$)");
  std::smatch m;
  if (std::regex_match(s, m, fence)) return m[1].str();
  return s;
}

std::string check(const std::string& name, const TaskEntry& task, const std::string& output) {
  std::string s = strip(output);
  std::string head = repr(prefix_chars(s, 40));
  if (name == "label_in_set") {
    for (const std::string& label : task.labels)
      if (s == label) return "";
    return head + " is not one of the task's labels";
  }
  if (name == "non_empty") return s.empty() ? "empty output" : "";
  if (name == "number") {
    static const std::regex number(R"(^-?[0-9]+(\.[0-9]+)?(/-?[0-9]+)?$)");
    return std::regex_match(s, number) ? "" : head + " is not a number";
  }
  if (name == "iso_datetime") {
    static const std::regex iso(R"(^([0-9]{4})-(1[0-2]|0[1-9]|[1-9])-(3[01]|[12][0-9]|0[1-9]|[1-9]| [1-9])[Tt](2[0-3]|[01][0-9]|[0-9]):([0-5][0-9]|[0-9])$)");
    std::smatch m;
    bool ok = std::regex_match(s, m, iso);
    if (ok) {
      int y = std::stoi(m[1].str()), mo = std::stoi(m[2].str()), d = std::stoi(m[3].str());
      static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
      bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
      ok = y >= 1 && d <= days[mo - 1] + (mo == 2 && leap ? 1 : 0);
    }
    return ok ? "" : head + " is not YYYY-MM-DDTHH:MM";
  }
  if (name == "json_schema") {
    json::Value value;
    try {
      value = json::parse(json_text(output), "the output", TINYLLM_INVALID_ARGUMENT);
    } catch (const LibError&) {
      return "not valid JSON (JSONDecodeError)";
    }
    std::string problem = schema_error(task.schema, value);
    return problem.empty() ? "" : "JSON does not match the schema: " + problem;
  }
  fail(TINYLLM_UNSUPPORTED, "task \"" + task.name + "\" uses the verifier \"" + name +
                                "\", which this library does not implement; verify its outputs in Python");
}

}  // namespace

std::string strip(const std::string& text) {
  size_t start = lead(text, py_space);
  std::string rest = text.substr(start);
  return rest.substr(0, trail(rest, py_space));
}

size_t first_line_break(const std::string& text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t at = pos;
    if (line_break(utf8::next(text, pos))) return at;
  }
  return std::string::npos;
}

size_t first_line_cut(const std::string& text) {
  size_t start = lead(text, py_space);
  size_t cut = first_line_break(text.substr(start));
  return cut == std::string::npos ? cut : start + cut;
}

std::string answer_text(const TaskEntry& task, const std::string& raw) {
  std::string text = strip(raw);
  if (task.output == "json" || text.empty()) return text;
  std::string first = strip(text.substr(0, std::min(text.size(), first_line_break(text))));
  return task.output == "label" ? label_of(task, first) : first;
}

ParsedOutput parse_output(const TaskEntry& task, const std::string& raw) {
  ParsedOutput out;
  std::string answer = answer_text(task, raw);
  if (task.output == "label") {
    bool known = false;
    for (const std::string& label : task.labels) known |= label == answer;
    if (!known) {
      out.reason = repr(prefix_chars(answer, 40)) + " is not one of the labels " + label_list(task.labels);
      return out;
    }
  }
  if (task.output == "json") {
    try {
      json::parse(json_text(answer), "the output", TINYLLM_INVALID_ARGUMENT);
    } catch (const LibError& e) {
      out.reason = std::string("not valid JSON (") + e.what() + ")";
      return out;
    }
  }
  for (const std::string& name : task.verifiers) {
    std::string problem = check(name, task, answer);
    if (!problem.empty()) {
      out.reason = name + ": " + problem;
      return out;
    }
  }
  out.value = task.output == "json" ? json_text(answer) : answer;
  out.valid = true;
  return out;
}

}  // namespace tinyllm

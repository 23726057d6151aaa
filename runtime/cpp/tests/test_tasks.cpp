// The task table reader, constrained decoding and output parsing, against hand-made cases.
#include "check.h"
#include "constraints.h"
#include "schema.h"
#include "taskoutput.h"
#include "tasks.h"

using namespace tinyllm;

namespace {

bool accepts(const std::string& text, char root = 0) {
  JsonPrefix p(root);
  return p.feed(text);
}

TaskEntry label_task() {
  TaskEntry t;
  t.name = "sentiment";
  t.output = "label";
  t.first_line = true;
  t.labels = {"negative", "neutral", "positive"};
  t.verifiers = {"label_in_set"};
  return t;
}

}  // namespace

TEST_CASE(json_prefix_follows_the_grammar) {
  CHECK(accepts("{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\"]}"));
  CHECK(accepts("{\"a\": 1"));  // a prefix
  CHECK(!accepts("{\"a\" 1"));
  CHECK(!accepts("[1,]"));
  CHECK(!accepts("01"));
  CHECK(!accepts("tru e"));
  CHECK(!accepts("\"a\nb\""));  // control characters are not allowed in strings
  CHECK(!accepts("[1]", '{'));  // the root must be an object
  CHECK(!accepts(std::string(17, ' ')));  // bounded whitespace
  JsonPrefix done;
  CHECK(done.feed("{}") && done.done() && done.complete());
  JsonPrefix number;
  CHECK(number.feed("12") && number.complete() && !number.done());
}

TEST_CASE(json_tokens_allow_only_valid_continuations) {
  JsonTokens tokens({"{", "\"", "a", "}", "", "\"}", "x y"}, 4);
  JsonPrefix state('{');
  CHECK(tokens.allowed(state) == std::vector<int32_t>{0});
  state.feed("{");
  CHECK((tokens.allowed(state) == std::vector<int32_t>{1, 3, 5}));  // "} opens a key
  state.feed("}");
  CHECK(tokens.allowed(state) == std::vector<int32_t>{4});  // only the end of sequence
  JsonPrefix in_string;
  in_string.feed("\"");
  CHECK((tokens.allowed(in_string) == std::vector<int32_t>{0, 1, 2, 3, 6}));  // not "}: after the string, nothing
}

TEST_CASE(label_trie_allows_labels_and_eos) {
  LabelTrie trie({{5, 6}, {5, 7, 8}, {9}}, 2);
  CHECK((trie.allowed({}) == std::vector<int32_t>{5, 9}));
  CHECK((trie.allowed({5}) == std::vector<int32_t>{6, 7}));
  CHECK(trie.allowed({5, 6}) == std::vector<int32_t>{2});
  CHECK(trie.complete({5, 6}) && trie.complete({9}) && !trie.complete({5, 7}));
  CHECK(trie.allowed({4}).empty());
}

TEST_CASE(label_trie_forces_a_tail_only_up_to_the_labels_end) {
  // labels: 5 6 | 5 7 8 9 | 10 11 12 | 10 11 | 13
  LabelTrie trie({{5, 6}, {5, 7, 8, 9}, {10, 11, 12}, {10, 11}, {13}}, 2);
  CHECK(trie.forced_tail({}).empty());         // five labels to choose from
  CHECK(trie.forced_tail({5}).empty());        // 6 or 7: the model's choice
  CHECK((trie.forced_tail({5, 7}) == std::vector<int32_t>{8, 9}));  // one way to the end
  CHECK(trie.forced_tail({5, 7, 8}) == std::vector<int32_t>{9});
  CHECK(trie.forced_tail({5, 6}).empty());     // complete: nothing to add
  CHECK(trie.forced_tail({10}).empty());       // 11 is forced, then end or 12: left to the model
  CHECK(trie.forced_tail({10, 11}).empty());   // end of sequence or 12
  CHECK(trie.forced_tail({13}).empty());
  CHECK(trie.forced_tail({4}).empty());        // off the trie
  LabelTrie no_eos({{3, 4, 5}}, -1);           // without an end-of-sequence token
  CHECK((no_eos.forced_tail({}) == std::vector<int32_t>{3, 4, 5}));
}

TEST_CASE(outputs_parse_as_the_python_router) {
  TaskEntry t = label_task();
  CHECK_EQ(answer_text(t, "  Positive.\nmore"), "positive");
  CHECK_EQ(answer_text(t, "The text is negative"), "negative");
  ParsedOutput bad = parse_output(t, "happy");
  CHECK(!bad.valid && bad.reason == "'happy' is not one of the labels ['negative', 'neutral', 'positive']");
  CHECK(parse_output(t, "neutral").valid);
  CHECK_EQ(first_line_cut("  abc\ndef"), 5u);
  CHECK_EQ(first_line_cut("  abc"), std::string::npos);
  TaskEntry date;
  date.name = "dates";
  date.output = "text";
  date.verifiers = {"iso_datetime"};
  CHECK(parse_output(date, "2024-02-29T10:05").valid);
  CHECK(!parse_output(date, "2023-02-29T10:05").valid);
  date.verifiers = {"number"};
  CHECK(parse_output(date, "-3/4").valid && !parse_output(date, "3 apples").valid);
  date.verifiers = {"no_such_check"};
  CHECK_FAILS(parse_output(date, "1"), TINYLLM_UNSUPPORTED, "no_such_check");
}

TEST_CASE(json_outputs_check_the_schema) {
  json::Value schema = json::parse(
      R"({"type": "object", "properties": {"city": {"type": "string", "minLength": 1},
          "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
          "guests": {"type": "integer", "minimum": 1}},
          "required": ["city", "date", "guests"], "additionalProperties": false})",
      "schema");
  auto check_of = [&](const char* text) { return schema_error(schema, json::parse(text, "value")); };
  CHECK(check_of(R"({"city": "Rome", "date": "2024-01-02", "guests": 2.0})").empty());
  CHECK(!check_of(R"({"city": "Rome", "date": "2024-01-02"})").empty());
  CHECK(!check_of(R"({"city": "", "date": "2024-01-02", "guests": 2})").empty());
  CHECK(!check_of(R"({"city": "R", "date": "2024-1-02", "guests": 2})").empty());
  CHECK(!check_of(R"({"city": "R", "date": "2024-01-02", "guests": 0})").empty());
  CHECK(!check_of(R"({"city": "R", "date": "2024-01-02", "guests": 2, "x": 1})").empty());
  CHECK(!check_of(R"({"city": "R", "date": "2024-01-02", "guests": true})").empty());
  CHECK_FAILS(schema_error(json::parse(R"({"oneOf": []})", "s"), json::parse("1", "v")), TINYLLM_UNSUPPORTED, "oneOf");
  TaskEntry t;
  t.name = "booking";
  t.output = "json";
  t.verifiers = {"json_schema"};
  t.schema = schema;
  ParsedOutput fenced = parse_output(t, "```json\n{\"city\": \"Rome\", \"date\": \"2024-01-02\", \"guests\": 3}\n```");
  CHECK(fenced.valid && fenced.value == "{\"city\": \"Rome\", \"date\": \"2024-01-02\", \"guests\": 3}");
  CHECK(!parse_output(t, "{\"city\": ").valid);
}

TEST_CASE(task_tables_are_checked) {
  CHECK_FAILS(TaskTable::parse(R"({"schema": 2, "stop_ids": [], "tasks": {}})", "t.json"), TINYLLM_BUNDLE_ERROR,
              "schema is not 1");
  CHECK_FAILS(TaskTable::parse(R"({"schema": 1, "stop_ids": [-1], "tasks": {}})", "t.json"), TINYLLM_BUNDLE_ERROR,
              "out of range");
  TaskTable empty = TaskTable::parse(R"({"schema": 1, "stop_ids": [2], "tasks": {}})", "t.json");
  CHECK_FAILS(empty.task("x"), TINYLLM_NOT_FOUND, "serves: none");
}

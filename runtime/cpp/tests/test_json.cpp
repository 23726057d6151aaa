// JSON reader: values, escapes, errors with positions, duplicate keys, depth limit.
#include <string>

#include "check.h"
#include "json.h"

using tinyllm::json::parse;

TEST_CASE(json_values_and_order) {
  auto v = parse(R"( {"b": [1, -2.5e3, true, false, null], "a": {"x": "y"}, "n": 9007199254740993} )", "t");
  const auto& members = v.as_object("t");
  CHECK_EQ(members.size(), 3u);
  CHECK_EQ(members[0].first, "b");  // key order is kept
  const auto& b = v.at("b", "t").as_array("b");
  CHECK_EQ(b[0].as_int("0"), 1);
  CHECK(b[1].as_number("1") == -2500.0 && !b[1].is_integer());
  CHECK(b[2].as_bool("2") && !b[3].as_bool("3") && b[4].is_null());
  CHECK_EQ(v.at("a", "t").at("x", "a").as_string("x"), "y");
  CHECK_EQ(v.at("n", "t").as_int("n"), 9007199254740993LL);  // exact, not via double
  CHECK(v.find("missing") == nullptr);
}

TEST_CASE(json_string_escapes) {
  auto v = parse(R"(["\"\\\/\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "plain é 中"])", "t");
  const auto& a = v.as_array("t");
  CHECK_EQ(a[0].as_string(""), "\"\\/\b\f\n\r\t");
  CHECK_EQ(a[1].as_string(""), "\xC3\xA9\xE4\xB8\xAD");
  CHECK_EQ(a[2].as_string(""), "\xF0\x9F\x98\x80");
  CHECK_EQ(a[3].as_string(""), "plain \xC3\xA9 \xE4\xB8\xAD");
}

TEST_CASE(json_large_object_lookup) {
  std::string text = "{";
  for (int i = 0; i < 100; ++i) text += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":" + std::to_string(i);
  text += "}";
  auto v = parse(text, "t");
  CHECK_EQ(v.at("k73", "t").as_int(""), 73);
  CHECK(v.find("k100") == nullptr);
}

TEST_CASE(json_errors_name_the_place) {
  CHECK_FAILS(parse("{\"a\": 1,}", "f.json"), TINYLLM_BUNDLE_ERROR, "f.json: not valid JSON at byte 8");
  CHECK_FAILS(parse("[1, 2", "f"), TINYLLM_BUNDLE_ERROR, "expected ',' or ']'");
  CHECK_FAILS(parse("{\"a\": 1, \"a\": 2}", "f"), TINYLLM_BUNDLE_ERROR, "appears twice");
  CHECK_FAILS(parse("\"\\ud800\"", "f"), TINYLLM_BUNDLE_ERROR, "surrogate");
  CHECK_FAILS(parse("\"\\udc00x\"", "f"), TINYLLM_BUNDLE_ERROR, "lone low surrogate");
  CHECK_FAILS(parse("\"a\xff\"", "f"), TINYLLM_BUNDLE_ERROR, "invalid UTF-8");
  CHECK_FAILS(parse("\"a\nb\"", "f"), TINYLLM_BUNDLE_ERROR, "control character");
  CHECK_FAILS(parse("01", "f"), TINYLLM_BUNDLE_ERROR, "after the JSON value");
  CHECK_FAILS(parse("1.", "f"), TINYLLM_BUNDLE_ERROR, "no digits after");
  CHECK_FAILS(parse("tru", "f"), TINYLLM_BUNDLE_ERROR, "unknown literal");
  CHECK_FAILS(parse("", "f"), TINYLLM_BUNDLE_ERROR, "unexpected end");
  CHECK_FAILS(parse(std::string(1000, '[') + std::string(1000, ']'), "f"), TINYLLM_BUNDLE_ERROR, "nested deeper");
  CHECK_FAILS(parse("[1]", "f", TINYLLM_TOKENIZER_ERROR).at("x", "f"), TINYLLM_BUNDLE_ERROR, "expected an object");
}

TEST_CASE(json_type_errors) {
  auto v = parse(R"({"s": "x", "f": 1.5})", "m");
  CHECK_FAILS(v.at("s", "m").as_int("m.s"), TINYLLM_BUNDLE_ERROR, "m.s: expected an integer, got a string");
  CHECK_FAILS(v.at("f", "m").as_int("m.f"), TINYLLM_BUNDLE_ERROR, "m.f: expected an integer");
  CHECK_FAILS(v.at("missing", "m"), TINYLLM_BUNDLE_ERROR, "m: missing key \"missing\"");
}

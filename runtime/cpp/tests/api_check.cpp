// Drives the C API from a native program, for the tests (and the sanitizer build):
//   api_check tokenize TOKENIZER_PATH FILE   one JSON string per line -> ids, decoded text
//   api_check generate BUNDLE FILE           one JSON request per line -> results
//   api_check errors BUNDLE                  bad inputs: each must fail with a message
//   api_check serve BUNDLE FILE              one JSON [task, text] per line, submitted
//                                            from 8 threads to a server -> answers, stats
//   api_check tools BUNDLE TOOL,TOOL FILE    tasks with tools: each TOOL an echo callback
//                                            (its result: the "expression" argument; a
//                                            name with "broken" fails) -> answers, calls;
//                                            then the raw calls (raw_tool_calls), batched
//                                            and served
// Output is one JSON line per input; the exit status is nonzero on any unexpected result.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "json.h"
#include "tinyllm/tinyllm.h"

namespace {

using tinyllm::json::Value;

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string ids_json(const int32_t* ids, size_t n) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "]";
}

std::string status_json(tinyllm_status s) {
  return "{\"status\":" + quote(tinyllm_status_name(s)) + ",\"error\":" + quote(tinyllm_last_error()) + "}";
}

int tokenize(const char* path, const char* file) {
  tinyllm_tokenizer* tok = nullptr;
  if (tinyllm_tokenizer_load(path, &tok) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::string text = tinyllm::json::parse(line, "input").as_string("input");
    int32_t* ids = nullptr;
    size_t n = 0;
    tinyllm_status s = tinyllm_encode(tok, text.data(), text.size(), &ids, &n);
    if (s != TINYLLM_OK) {
      std::cout << status_json(s) << "\n";
      continue;
    }
    char* decoded = nullptr;
    size_t len = 0;
    tinyllm_decode(tok, ids, n, 0, &decoded, &len);
    std::cout << "{\"ids\":" << ids_json(ids, n) << ",\"text\":" << quote(std::string(decoded, len)) << "}\n";
    tinyllm_free(ids);
    tinyllm_free(decoded);
  }
  tinyllm_tokenizer_free(tok);
  return 0;
}

struct Streamed {
  std::vector<std::string> pieces;
};

int on_text(void* user, size_t index, const char* piece, size_t len) {
  auto* s = static_cast<Streamed*>(user);
  if (index >= s->pieces.size()) s->pieces.resize(index + 1);
  s->pieces[index].append(piece, len);
  return 0;
}

int generate(const char* bundle, const char* file) {
  tinyllm_load_options options;
  tinyllm_load_options_init(&options);
  std::ifstream in(file);
  std::string line;
  tinyllm_engine* engine = nullptr;
  std::string loaded;
  int bad = 0;
  while (std::getline(in, line)) {
    Value req = tinyllm::json::parse(line, "request");
    std::string name = req.find("engine") ? req.at("engine", "r").as_string("engine") : "";
    int batch = req.find("max_batch") ? static_cast<int>(req.at("max_batch", "r").as_int("")) : 8;
    std::string key = name + "/" + std::to_string(batch);
    if (engine == nullptr || key != loaded) {
      tinyllm_engine_free(engine);
      options.engine = name.empty() ? nullptr : name.c_str();
      options.max_batch = batch;
      if (tinyllm_engine_load(bundle, &options, &engine) != TINYLLM_OK) {
        std::cerr << tinyllm_last_error() << "\n";
        return 1;
      }
      loaded = key;
    }
    const auto& prompts = req.at("prompts", "r").as_array("prompts");
    std::vector<std::vector<int32_t>> ids(prompts.size());
    std::vector<std::string> adapters(prompts.size());
    std::vector<tinyllm_prompt> raw(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      for (const Value& v : prompts[i].as_array("ids")) ids[i].push_back(static_cast<int32_t>(v.as_int("id")));
      raw[i] = tinyllm_prompt{nullptr, 0, ids[i].data(), ids[i].size(), nullptr};
      if (const Value* a = req.find("adapters"); a && !a->as_array("a")[i].is_null()) {
        adapters[i] = a->as_array("a")[i].as_string("adapter");
        raw[i].adapter = adapters[i].c_str();
      }
    }
    tinyllm_generation_config c;
    tinyllm_generation_config_init(&c);
    const Value& cfg = req.at("config", "r");
    if (const Value* v = cfg.find("max_new_tokens")) c.max_new_tokens = static_cast<int32_t>(v->as_int(""));
    if (const Value* v = cfg.find("temperature")) c.temperature = v->as_number("");
    if (const Value* v = cfg.find("top_k")) c.top_k = static_cast<int32_t>(v->as_int(""));
    if (const Value* v = cfg.find("top_p")) c.top_p = v->as_number("");
    if (const Value* v = cfg.find("seed"); v && !v->is_null()) c.has_seed = 1, c.seed = static_cast<uint64_t>(v->as_int(""));
    if (const Value* v = cfg.find("ignore_eos")) c.ignore_eos = v->as_bool("");
    std::vector<std::string> stops;
    std::vector<const char*> stop_ptrs;
    if (const Value* v = cfg.find("stop"))
      for (const Value& s : v->as_array("stop")) stops.push_back(s.as_string(""));
    for (const std::string& s : stops) stop_ptrs.push_back(s.c_str());
    c.stop = stop_ptrs.data();
    c.n_stop = stop_ptrs.size();
    Streamed streamed;
    tinyllm_results* results = nullptr;
    tinyllm_status s = tinyllm_generate(engine, raw.data(), raw.size(), &c, on_text, &streamed, &results);
    if (s != TINYLLM_OK) {
      std::cout << status_json(s) << "\n";
      continue;
    }
    std::string out = "{\"results\":[";
    for (size_t i = 0; i < tinyllm_results_count(results); ++i) {
      tinyllm_result r{};
      tinyllm_results_get(results, i, &r);
      std::string text(r.text, r.text_len);
      std::string joined = i < streamed.pieces.size() ? streamed.pieces[i] : "";
      if (joined != text) ++bad;  // the streamed pieces must join to the final text
      out += std::string(i ? "," : "") + "{\"ids\":" + ids_json(r.token_ids, r.n_tokens) +
             ",\"text\":" + quote(text) + ",\"streamed\":" + quote(joined) +
             ",\"prompt_tokens\":" + std::to_string(r.prompt_tokens) + ",\"finish_reason\":" +
             (r.finish_reason == TINYLLM_FINISH_STOP ? "\"stop\"" : "\"length\"") + "}";
    }
    std::cout << out << "]}\n";
    tinyllm_results_free(results);
  }
  tinyllm_engine_free(engine);
  return bad == 0 ? 0 : 3;
}

// Each bad call must return the expected status and leave a message.
int errors(const char* bundle) {
  int bad = 0;
  auto expect = [&](const char* what, tinyllm_status got, tinyllm_status want) {
    bool ok = got == want && tinyllm_last_error()[0] != '\0';
    std::cout << "{\"case\":" << quote(what) << ",\"ok\":" << (ok ? "true" : "false") << ",\"status\":"
              << quote(tinyllm_status_name(got)) << ",\"error\":" << quote(tinyllm_last_error()) << "}\n";
    bad += ok ? 0 : 1;
  };
  tinyllm_engine* engine = nullptr;
  tinyllm_tokenizer* tok = nullptr;
  int32_t* ids = nullptr;
  size_t n = 0;
  char* text = nullptr;
  tinyllm_results* results = nullptr;
  expect("null bundle path", tinyllm_engine_load(nullptr, nullptr, &engine), TINYLLM_INVALID_ARGUMENT);
  expect("null out", tinyllm_engine_load(bundle, nullptr, nullptr), TINYLLM_INVALID_ARGUMENT);
  expect("missing bundle", tinyllm_engine_load("/nonexistent/x.tllm", nullptr, &engine), TINYLLM_BUNDLE_ERROR);
  expect("null tokenizer", tinyllm_encode(nullptr, "a", 1, &ids, &n), TINYLLM_INVALID_ARGUMENT);
  expect("null engine", tinyllm_generate(nullptr, nullptr, 0, nullptr, nullptr, nullptr, &results), TINYLLM_INVALID_ARGUMENT);
  expect("null results", tinyllm_results_get(nullptr, 0, nullptr), TINYLLM_INVALID_ARGUMENT);
  expect("null stream", tinyllm_text_stream_push(nullptr, 0, nullptr, nullptr), TINYLLM_INVALID_ARGUMENT);
  tinyllm_load_options wrong{};  // struct_size not filled
  expect("options not initialized", tinyllm_engine_load(bundle, &wrong, &engine), TINYLLM_INVALID_ARGUMENT);
  if (tinyllm_engine_load(bundle, nullptr, &engine) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  const tinyllm_tokenizer* etok = tinyllm_engine_tokenizer(engine);
  expect("invalid UTF-8", tinyllm_encode(etok, "ab\xff", 3, &ids, &n), TINYLLM_TOKENIZER_ERROR);
  expect("null text", tinyllm_encode(etok, nullptr, 3, &ids, &n), TINYLLM_INVALID_ARGUMENT);
  int32_t negative = -1;
  expect("negative id", tinyllm_decode(etok, &negative, 1, 1, &text, &n), TINYLLM_TOKENIZER_ERROR);
  expect("unknown token", tinyllm_token_to_id(etok, "no such token \x01", &negative), TINYLLM_TOKENIZER_ERROR);
  tinyllm_prompt empty{"", 0, nullptr, 0, nullptr};
  expect("empty prompt", tinyllm_generate(engine, &empty, 1, nullptr, nullptr, nullptr, &results), TINYLLM_CONTEXT_ERROR);
  tinyllm_engine_info info{};
  tinyllm_engine_get_info(engine, &info);
  std::vector<int32_t> long_ids(static_cast<size_t>(info.max_seq_len), 5);
  tinyllm_prompt too_long{nullptr, 0, long_ids.data(), long_ids.size(), nullptr};
  expect("prompt too long", tinyllm_generate(engine, &too_long, 1, nullptr, nullptr, nullptr, &results), TINYLLM_CONTEXT_ERROR);
  int32_t outside = info.vocab_size;
  tinyllm_prompt bad_id{nullptr, 0, &outside, 1, nullptr};
  expect("token id outside the vocabulary", tinyllm_generate(engine, &bad_id, 1, nullptr, nullptr, nullptr, &results), TINYLLM_INVALID_ARGUMENT);
  tinyllm_prompt bad_text{"\xc3\x28", 2, nullptr, 0, nullptr};
  expect("invalid UTF-8 prompt", tinyllm_generate(engine, &bad_text, 1, nullptr, nullptr, nullptr, &results), TINYLLM_TOKENIZER_ERROR);
  tinyllm_prompt unknown_adapter{"hi", 2, nullptr, 0, "no-such-task"};
  expect("unknown adapter", tinyllm_generate(engine, &unknown_adapter, 1, nullptr, nullptr, nullptr, &results), TINYLLM_NOT_FOUND);
  tinyllm_generation_config c;
  tinyllm_generation_config_init(&c);
  c.max_new_tokens = 0;
  tinyllm_prompt hi{"hi", 2, nullptr, 0, nullptr};
  expect("max_new_tokens 0", tinyllm_generate(engine, &hi, 1, &c, nullptr, nullptr, &results), TINYLLM_INVALID_ARGUMENT);
  tinyllm_generation_config_init(&c);
  c.top_p = 0;
  expect("top_p 0", tinyllm_generate(engine, &hi, 1, &c, nullptr, nullptr, &results), TINYLLM_INVALID_ARGUMENT);
  tinyllm_generation_config_init(&c);
  c.max_new_tokens = 4;
  expect("cancelled by the callback",
         tinyllm_generate(engine, &hi, 1, &c, [](void*, size_t, const char*, size_t) { return 1; }, nullptr, &results),
         TINYLLM_CANCELLED);
  // After all that, the engine still works.
  tinyllm_status s = tinyllm_generate(engine, &hi, 1, &c, nullptr, nullptr, &results);
  std::cout << "{\"case\":\"still works\",\"ok\":" << (s == TINYLLM_OK ? "true" : "false") << "}\n";
  bad += s == TINYLLM_OK ? 0 : 1;
  tinyllm_results_free(results);
  tinyllm_engine_free(engine);
  tinyllm_tokenizer_free(tok);
  return bad == 0 ? 0 : 3;
}

}  // namespace

std::string task_json(tinyllm_status s, const tinyllm_task_result& r) {
  if (s != TINYLLM_OK) return status_json(s);
  return "{\"ids\":" + ids_json(r.token_ids, r.n_tokens) + ",\"text\":" + quote(std::string(r.text, r.text_len)) +
         ",\"valid\":" + (r.valid ? "true" : "false") + ",\"value\":" + quote(std::string(r.value, r.value_len)) + "}";
}

int append_piece(void* user, const char* piece, size_t len) {
  static_cast<std::string*>(user)->append(piece, len);
  return 0;
}

// Serve every request from 8 threads (prompts prefilled in chunks of 8 tokens, batched);
// stream one answer and let one pass its deadline; then cancel one queued request and
// close with requests in flight: every outcome must be a status, and nothing may leak.
int serve(const char* bundle, const char* file) {
  tinyllm_load_options options;
  tinyllm_load_options_init(&options);
  options.max_batch = 4;
  tinyllm_server_options serving;
  tinyllm_server_options_init(&serving);
  serving.chunk_size = 8;
  serving.prefill_tokens = 16;
  tinyllm_engine* engine = nullptr;
  tinyllm_server* server = nullptr;
  if (tinyllm_engine_load(bundle, &options, &engine) != TINYLLM_OK ||
      tinyllm_server_start(engine, &serving, &server) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  std::ifstream in(file);
  std::vector<std::pair<std::string, std::string>> requests;
  for (std::string line; std::getline(in, line);) {
    Value request = tinyllm::json::parse(line, "request");
    const auto& pair = request.as_array("request");
    requests.emplace_back(pair.at(0).as_string("task"), pair.at(1).as_string("text"));
  }
  std::vector<std::string> answers(requests.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < 8; ++k)
    threads.emplace_back([&, k] {
      for (size_t i = k; i < requests.size(); i += 8) {
        tinyllm_task_request r{requests[i].first.c_str(), requests[i].second.data(), requests[i].second.size()};
        tinyllm_request* handle = nullptr;
        tinyllm_status s = tinyllm_server_submit(server, &r, nullptr, &handle);
        tinyllm_task_result result{};
        if (s == TINYLLM_OK) s = tinyllm_request_wait(handle, &result);
        answers[i] = task_json(s, result);
        tinyllm_request_free(handle);
      }
    });
  for (auto& t : threads) t.join();
  for (const std::string& a : answers) std::cout << a << "\n";
  std::string streamed;
  tinyllm_task_request first{requests[0].first.c_str(), requests[0].second.data(), requests[0].second.size()};
  tinyllm_request* stream = nullptr;
  tinyllm_task_result streamed_result{};
  bool streamed_equal = tinyllm_server_submit_stream(server, &first, nullptr, append_piece, &streamed, &stream) == TINYLLM_OK &&
                        tinyllm_request_wait(stream, &streamed_result) == TINYLLM_OK &&
                        streamed == std::string(streamed_result.text, streamed_result.text_len);
  tinyllm_request_free(stream);
  tinyllm_task_options late;
  tinyllm_task_options_init(&late);
  late.deadline_s = 1e-6;
  tinyllm_request* expired = nullptr;
  tinyllm_task_result expired_result{};
  tinyllm_status deadline = tinyllm_server_submit(server, &first, &late, &expired);
  if (deadline == TINYLLM_OK) deadline = tinyllm_request_wait(expired, &expired_result);
  tinyllm_request_free(expired);
  std::vector<tinyllm_request*> pending(requests.size(), nullptr);
  for (size_t i = 0; i < requests.size(); ++i) {
    tinyllm_task_request r{requests[i].first.c_str(), requests[i].second.data(), requests[i].second.size()};
    tinyllm_server_submit(server, &r, nullptr, &pending[i]);
  }
  tinyllm_request_cancel(pending.back());
  tinyllm_server_close(server, 0);
  std::string outcomes;
  for (tinyllm_request* p : pending) {
    tinyllm_task_result result{};
    outcomes += std::string(outcomes.empty() ? "" : ",") + quote(tinyllm_status_name(tinyllm_request_wait(p, &result)));
    tinyllm_request_free(p);
  }
  tinyllm_server_stats stats{};
  tinyllm_server_get_stats(server, &stats);
  std::cout << "{\"outcomes\":[" << outcomes << "],\"completed\":" << stats.completed
            << ",\"prefix_hits\":" << stats.prefix_hits << ",\"streamed\":" << (streamed_equal ? "true" : "false")
            << ",\"deadline\":" << quote(tinyllm_status_name(deadline)) << "}\n";
  tinyllm_server_free(server);
  tinyllm_engine_free(engine);
  return 0;
}

// A tool callback: echoes the call's "expression" argument; `user` is the tool's name.
int echo_tool(void* user, const char* arguments, size_t len, tinyllm_tool_reply* reply) {
  std::string name = static_cast<const char*>(user);
  std::string text = name.find("broken") != std::string::npos
                         ? "ValueError: the tool broke"
                         : tinyllm::json::parse(std::string(arguments, len), "arguments").at("expression", "arguments").as_string("expression");
  tinyllm_tool_reply_set(reply, text.data(), text.size());
  return name.find("broken") != std::string::npos ? 1 : 0;
}

std::string call_json(tinyllm_status s, const tinyllm_tool_call& c) {
  if (s != TINYLLM_OK) return quote(tinyllm_status_name(s));
  return "{\"name\":" + quote(std::string(c.name, c.name_len)) + ",\"arguments\":" +
         quote(std::string(c.arguments, c.arguments_len)) + ",\"ok\":" + (c.ok ? "true" : "false") +
         ",\"result\":" + quote(std::string(c.result, c.result_len)) + ",\"error\":" +
         quote(std::string(c.error, c.error_len)) + "}";
}

// Tasks with tools: run every request in one tinyllm_run_tasks batch, then submit them
// all from 4 threads to a server (calls on its tool threads, context answers decoded
// after them), then submit them again and close without draining: every outcome a status.
int tools(const char* bundle, const std::string& tool_list, const char* file) {
  std::vector<std::string> names;
  for (size_t start = 0, end; start <= tool_list.size(); start = end + 1) {
    end = tool_list.find(',', start);
    if (end == std::string::npos) end = tool_list.size();
    names.push_back(tool_list.substr(start, end - start));
  }
  tinyllm_load_options options;
  tinyllm_load_options_init(&options);
  options.max_batch = 4;
  tinyllm_engine* engine = nullptr;
  if (tinyllm_engine_load(bundle, &options, &engine) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  for (std::string& name : names)
    if (tinyllm_engine_register_tool(engine, name.c_str(), echo_tool, name.data()) != TINYLLM_OK) {
      std::cerr << tinyllm_last_error() << "\n";
      return 1;
    }
  std::ifstream in(file);
  std::vector<std::pair<std::string, std::string>> requests;
  for (std::string line; std::getline(in, line);) {
    Value request = tinyllm::json::parse(line, "request");
    const auto& pair = request.as_array("request");
    requests.emplace_back(pair.at(0).as_string("task"), pair.at(1).as_string("text"));
  }
  std::vector<tinyllm_task_request> batch;
  for (const auto& [task, text] : requests) batch.push_back({task.c_str(), text.data(), text.size()});
  tinyllm_task_results* results = nullptr;
  if (tinyllm_run_tasks(engine, batch.data(), batch.size(), nullptr, &results) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    tinyllm_task_result r{};
    tinyllm_tool_call c{};
    tinyllm_status s = tinyllm_task_results_get(results, i, &r);
    std::string answer = task_json(s, r);
    answer.pop_back();
    std::cout << answer << ",\"call\":" << call_json(tinyllm_task_results_get_tool_call(results, i, &c), c) << "}\n";
  }
  tinyllm_task_results_free(results);
  tinyllm_task_options raw;  // the calls unexecuted: batched, then served one at a time
  tinyllm_task_options_init(&raw);
  raw.raw_tool_calls = 1;
  if (tinyllm_run_tasks(engine, batch.data(), batch.size(), &raw, &results) != TINYLLM_OK) {
    std::cerr << tinyllm_last_error() << "\n";
    return 1;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    tinyllm_task_result r{};
    tinyllm_tool_call c{};
    std::string answer = task_json(tinyllm_task_results_get(results, i, &r), r);
    answer.pop_back();
    std::cout << answer << ",\"call\":" << call_json(tinyllm_task_results_get_tool_call(results, i, &c), c) << "}\n";
  }
  tinyllm_task_results_free(results);
  tinyllm_server* server = nullptr;
  if (tinyllm_server_start(engine, nullptr, &server) != TINYLLM_OK) return 1;
  for (const tinyllm_task_request& request : batch) {
    tinyllm_request* handle = nullptr;
    tinyllm_status s = tinyllm_server_submit(server, &request, &raw, &handle);
    tinyllm_task_result r{};
    tinyllm_tool_call c{};
    if (s == TINYLLM_OK) s = tinyllm_request_wait(handle, &r);
    std::string answer = task_json(s, r);
    answer.pop_back();
    std::cout << answer << ",\"call\":" << call_json(s == TINYLLM_OK ? tinyllm_request_get_tool_call(handle, &c) : s, c)
              << "}\n";
    tinyllm_request_free(handle);
  }
  std::vector<std::string> answers(requests.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (size_t i = k; i < batch.size(); i += 4) {
        tinyllm_request* handle = nullptr;
        tinyllm_status s = tinyllm_server_submit(server, &batch[i], nullptr, &handle);
        tinyllm_task_result r{};
        tinyllm_tool_call c{};
        if (s == TINYLLM_OK) s = tinyllm_request_wait(handle, &r);
        answers[i] = task_json(s, r);
        answers[i].pop_back();
        answers[i] += ",\"call\":" + call_json(s == TINYLLM_OK ? tinyllm_request_get_tool_call(handle, &c) : s, c) + "}";
        tinyllm_request_free(handle);
      }
    });
  for (auto& t : threads) t.join();
  for (const std::string& a : answers) std::cout << a << "\n";
  std::vector<tinyllm_request*> pending(batch.size(), nullptr);
  for (size_t i = 0; i < batch.size(); ++i) tinyllm_server_submit(server, &batch[i], nullptr, &pending[i]);
  tinyllm_server_close(server, 0);
  std::string outcomes;
  for (tinyllm_request* p : pending) {
    tinyllm_task_result r{};
    outcomes += std::string(outcomes.empty() ? "" : ",") + quote(tinyllm_status_name(tinyllm_request_wait(p, &r)));
    tinyllm_request_free(p);
  }
  std::cout << "{\"outcomes\":[" << outcomes << "]}\n";
  tinyllm_server_free(server);
  tinyllm_engine_free(engine);
  return 0;
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "tokenize" && argc == 4) return tokenize(argv[2], argv[3]);
  if (mode == "generate" && argc == 4) return generate(argv[2], argv[3]);
  if (mode == "errors" && argc == 3) return errors(argv[2]);
  if (mode == "serve" && argc == 4) return serve(argv[2], argv[3]);
  if (mode == "tools" && argc == 5) return tools(argv[2], argv[3], argv[4]);
  std::cerr << "usage: api_check tokenize PATH FILE | generate BUNDLE FILE | errors BUNDLE\n";
  return 2;
}

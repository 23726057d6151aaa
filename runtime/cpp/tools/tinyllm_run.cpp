// tinyllm-run BUNDLE (--prompt TEXT | --task NAME [TEXT...]) [options]: generate from a
// bundle's exported engine, streaming the text to stdout; or answer task requests (the
// engine's tasks.json) through a server, one answer line per input. Built on the C++
// wrappers (tinyllm.hpp, server.hpp).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "tinyllm/server.hpp"
#include "tinyllm/tinyllm.hpp"

namespace {

const char* kUsage =
    "usage: tinyllm-run BUNDLE --prompt TEXT [options]\n"
    "       tinyllm-run BUNDLE --task NAME [TEXT...] [options]\n"
    "  --task NAME            answer each TEXT (else each stdin line) with the task; prints\n"
    "                         the answer per line (the value, or INVALID: reason | text)\n"
    "  --raw-tools            a task with tools prints its call, {\"name\": ..., \"arguments\":\n"
    "                         {...}}, checked but not run (tinyllm-run has no tools to run)\n"
    "  --max-batch N          rows served at once with --task (8)\n"
    "  --engine NAME          engine under engines/ (default: the first onnx-cpu one)\n"
    "  --adapter TASK         use TASK's LoRA adapter\n"
    "  --max-new-tokens N     (128; with --task the task's own)\n"
    "  --temperature T        0 = greedy (0)\n"
    "  --top-k K  --top-p P   sampling filters (0, 1.0)\n"
    "  --seed S               repeatable sampling\n"
    "  --stop TEXT            stop string (repeatable)\n"
    "  --ignore-eos           do not stop at end-of-sequence tokens\n"
    "  --threads N            intra-op threads (default: all usable CPUs)\n"
    "  --max-seq-len N        context per row (default: the export's, capped at 4096)\n"
    "  --verify               check every file's sha256 before loading\n"
    "  --ids                  print the generated token ids after the text\n"
    "  --stats                print timing counters to stderr\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "tinyllm-run: " << message << "\n" << kUsage;
  std::exit(2);
}

long number(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    long v = std::stol(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    usage_error(flag + " needs an integer, got \"" + value + "\"");
  }
}

double real(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    usage_error(flag + " needs a number, got \"" + value + "\"");
  }
}

struct Args {
  std::string bundle, adapter;
  std::optional<std::string> prompt, task;
  std::vector<std::string> texts;
  tinyllm::LoadOptions load;
  tinyllm::GenerationConfig gen;
  int task_max_new_tokens = 0;  // --task: 0 is the task's own limit
  bool ids = false, stats = false, raw_tools = false;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_error(arg + " needs a value");
      return args[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--prompt") a.prompt = value();
    else if (arg == "--engine") a.load.engine = value();
    else if (arg == "--adapter") a.adapter = value();
    else if (arg == "--max-new-tokens") a.gen.max_new_tokens = a.task_max_new_tokens = static_cast<int>(number(arg, value()));
    else if (arg == "--temperature") a.gen.temperature = real(arg, value());
    else if (arg == "--top-k") a.gen.top_k = static_cast<int>(number(arg, value()));
    else if (arg == "--top-p") a.gen.top_p = real(arg, value());
    else if (arg == "--seed") a.gen.seed = static_cast<uint64_t>(number(arg, value()));
    else if (arg == "--stop") a.gen.stop.push_back(value());
    else if (arg == "--ignore-eos") a.gen.ignore_eos = true;
    else if (arg == "--threads") a.load.threads = static_cast<int>(number(arg, value()));
    else if (arg == "--max-seq-len") a.load.max_seq_len = static_cast<int>(number(arg, value()));
    else if (arg == "--verify") a.load.verify_hashes = true;
    else if (arg == "--ids") a.ids = true;
    else if (arg == "--stats") a.stats = true;
    else if (arg == "--task") a.task = value();
    else if (arg == "--raw-tools") a.raw_tools = true;
    else if (arg == "--max-batch") a.load.max_batch = static_cast<int>(number(arg, value()));
    else if (!arg.empty() && arg[0] == '-') usage_error("unknown option " + arg);
    else if (a.bundle.empty()) a.bundle = arg;
    else a.texts.push_back(arg);
  }
  if (a.bundle.empty()) usage_error("give the bundle folder");
  if (a.prompt.has_value() == a.task.has_value()) usage_error("give one of --prompt TEXT or --task NAME");
  if (a.prompt && a.raw_tools) usage_error("--raw-tools goes with --task");
  if (a.prompt && !a.texts.empty()) usage_error("unexpected argument \"" + a.texts.front() + "\"");
  if (a.prompt) a.load.max_batch = 1;
  return a;
}

// --task: every input through one server (batched by its scheduler), answers in order.
int run_task(const Args& args, tinyllm::Engine& engine) {
  std::vector<std::string> texts = args.texts;
  if (texts.empty())
    for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
  tinyllm_server_options options;
  tinyllm_server_options_init(&options);
  options.queue_size = static_cast<int32_t>(texts.size()) + 1;
  tinyllm::Server server(engine, options);
  tinyllm::SubmitOptions submit;
  submit.max_new_tokens = args.task_max_new_tokens;
  submit.raw_tool_calls = args.raw_tools;
  std::vector<tinyllm::Request> pending;
  try {
    for (const std::string& text : texts) pending.push_back(server.submit(*args.task, text, submit));
  } catch (const tinyllm::Error& e) {
    std::string what = e.what();
    if (e.status() == TINYLLM_NOT_FOUND && what.find("has no callback") != std::string::npos)
      throw tinyllm::Error(e.status(), what + "; tinyllm-run registers no tools: give --raw-tools to print each "
                                              "call, checked but not run");
    throw;
  }
  int status = 0;
  for (tinyllm::Request& request : pending) {
    try {
      tinyllm::TaskOutput out = request.wait();
      if (out.valid) std::cout << out.value << "\n";
      else std::cout << "INVALID: " << out.reason << " | " << out.text << "\n";
      if (args.ids) {
        std::cout << "ids:";
        for (int32_t id : out.token_ids) std::cout << " " << id;
        std::cout << "\n";
      }
    } catch (const tinyllm::Error& e) {
      std::cout << "ERROR: " << tinyllm_status_name(e.status()) << ": " << e.what() << "\n";
      status = 1;
    }
  }
  std::cout.flush();
  if (args.stats) {
    tinyllm_server_stats s = server.stats();
    std::fprintf(stderr, "%llu completed (%llu invalid), %llu failed; prefix cache: %llu hits, %llu tokens saved\n",
                 static_cast<unsigned long long>(s.completed), static_cast<unsigned long long>(s.invalid),
                 static_cast<unsigned long long>(s.failed), static_cast<unsigned long long>(s.prefix_hits),
                 static_cast<unsigned long long>(s.prefix_tokens_saved));
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  try {
    tinyllm::Engine engine = tinyllm::Engine::load(args.bundle, args.load);
    if (args.task) return run_task(args, engine);
    tinyllm::Prompt prompt{*args.prompt, {}, args.adapter};
    auto results = engine.generate({prompt}, args.gen, [](size_t, std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::cout << "\n";
    const tinyllm::Generation& g = results.front();
    if (args.ids) {
      std::cout << "ids:";
      for (int32_t id : g.token_ids) std::cout << " " << id;
      std::cout << "\n";
    }
    if (args.stats) {
      tinyllm_stats s = engine.stats();
      std::fprintf(stderr, "prompt %zu tokens, generated %zu (%s); prefill %.1f ms, decode %.1f ms in %llu steps\n",
                   g.prompt_tokens, g.token_ids.size(),
                   g.finish_reason == TINYLLM_FINISH_STOP ? "stop" : "length", s.prefill_seconds * 1e3,
                   s.decode_seconds * 1e3, static_cast<unsigned long long>(s.decode_steps));
    }
    return 0;
  } catch (const tinyllm::Error& e) {
    std::cerr << "tinyllm-run: " << tinyllm_status_name(e.status()) << ": " << e.what() << "\n";
    return 1;
  }
}

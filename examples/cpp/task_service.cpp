// A minimal service embedding libtinyllm: reads requests as lines "TASK<TAB>TEXT" on
// stdin, answers them from 4 threads through one tinyllm::Server, and prints one line
// per request, in input order: "TASK<TAB>valid|invalid<TAB>VALUE or REASON".
//
//   task_service BUNDLE < requests.tsv
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <tinyllm/server.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: task_service BUNDLE < requests.tsv\n";
    return 2;
  }
  try {
    tinyllm::Engine engine = tinyllm::Engine::load(argv[1]);
    tinyllm::Server server(engine);
    std::vector<std::pair<std::string, std::string>> requests;
    for (std::string line; std::getline(std::cin, line);) {
      size_t tab = line.find('\t');
      if (tab == std::string::npos) {
        std::cerr << "each line is TASK<TAB>TEXT; got: " << line << "\n";
        return 2;
      }
      requests.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    }
    std::vector<std::string> answers(requests.size());
    std::vector<std::thread> workers;
    for (size_t k = 0; k < 4; ++k)
      workers.emplace_back([&, k] {
        for (size_t i = k; i < requests.size(); i += 4) {
          const auto& [task, text] = requests[i];
          try {
            tinyllm::TaskOutput out = server.submit(task, text).wait();
            answers[i] = task + "\t" + (out.valid ? "valid\t" + out.value : "invalid\t" + out.reason);
          } catch (const tinyllm::Error& e) {  // this request failed; the others go on
            answers[i] = task + "\terror\t" + tinyllm_status_name(e.status()) + ": " + e.what();
          }
        }
      });
    for (std::thread& w : workers) w.join();
    for (const std::string& a : answers) std::cout << a << "\n";
    tinyllm_server_stats stats = server.stats();
    std::cerr << stats.completed << " answered, " << stats.prefix_hits << " prefix cache hits\n";
  } catch (const tinyllm::Error& e) {
    std::cerr << tinyllm_status_name(e.status()) << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

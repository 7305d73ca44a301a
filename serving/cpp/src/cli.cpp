#include "deploy_lstm/cli.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <iostream>

#include "deploy_lstm/errors.h"

namespace deploy_lstm {

std::vector<std::string> parse_command_line(int argc, char** argv, const char* usage, const OptionHandler& option) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a.size() > 1 && a[0] == '-') {
      if (!option(a, value)) throw UsageError("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  return positional;
}

int64_t parse_int(const std::string& flag, const std::string& value, int64_t lowest) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || v < lowest) {
    throw UsageError(flag + " expects " + (lowest == 0 ? "a non-negative" : "a positive") + " integer, got '" + value +
                     "'");
  }
  return v;
}

int parse_threads(const std::string& flag, const std::string& value) {
  const int64_t threads = parse_int(flag, value, 1);
  if (threads > 1024) throw UsageError(flag + " expects at most 1024, got " + std::to_string(threads));
  return static_cast<int>(threads);
}

int run_tool(const char* usage, const std::function<int()>& body, C10Message c10) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n" << usage;
    return 2;
  } catch (const InputError& e) {
    std::cerr << "error: bad input: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    std::cerr << "error: " << (c10 == C10Message::kFirstLine ? what.substr(0, what.find('\n')) : what) << "\n";
  } catch (const std::exception& e) {  // ModelLoadError, NpyError, RunError, I/O
    std::cerr << "error: " << e.what() << "\n";
  }
  return 1;
}

}  // namespace deploy_lstm

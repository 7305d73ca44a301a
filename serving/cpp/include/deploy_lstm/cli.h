// What the command-line programs share: option values, integer options, and
// main()'s mapping of exceptions to exit status and one "error: ..." line.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace deploy_lstm {

// A bad command-line argument: run_tool prints "error: <what>" and the usage text, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Called for each option: `name` is the argument ("--out"), value() takes the next one
// (UsageError "<name> needs a value" when there is none). Returns false for an option it does not know.
using OptionHandler = std::function<bool(const std::string& name, const std::function<std::string()>& value)>;

// Walks argv[1..] in order: -h/--help prints `usage` on stdout and exits 0; any other argument
// that starts with '-' (but "-" itself) goes to `option`, UsageError "unknown option <name>" when
// it returns false. Returns the other (positional) arguments in order.
std::vector<std::string> parse_command_line(int argc, char** argv, const char* usage, const OptionHandler& option);

// `value` as an integer >= lowest (0 or 1); UsageError
// "<flag> expects a non-negative|positive integer, got '<value>'" otherwise.
int64_t parse_int(const std::string& flag, const std::string& value, int64_t lowest);

// --threads N: a positive integer, at most 1024.
int parse_threads(const std::string& flag, const std::string& value);

// c10::Error messages: whole, or only their first line.
enum class C10Message { kWhole, kFirstLine };

// Runs `body` (parse the arguments, run the program) and maps its exceptions:
// UsageError -> "error: <what>" + usage, 2; InputError -> "error: bad input: <what>", 1;
// c10::Error -> "error: <what without backtrace>", 1; any other std::exception -> "error: <what>", 1.
int run_tool(const char* usage, const std::function<int()>& body, C10Message c10 = C10Message::kWhole);

// run(parse(argc, argv)) under the mapping above.
template <class Parse, class Run>
int run_tool(int argc, char** argv, const char* usage, Parse parse, Run run, C10Message c10 = C10Message::kWhole) {
  return run_tool(usage, [&]() -> int { return run(parse(argc, argv)); }, c10);
}

}  // namespace deploy_lstm

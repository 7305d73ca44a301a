// What every fuzz target checks beyond "no crash, no sanitizer report": a refused input gives
// one printable line (the tools print "error: <what>" and nothing else).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace deploy_lstm_fuzz {

// Aborts (a finding) when `condition` is false.
inline void check(bool condition, const char* what, const std::string& detail = "") {
  if (condition) return;
  std::fprintf(stderr, "fuzz invariant violated: %s: %s\n", what, detail.c_str());
  std::abort();
}

// An error message must be one line without NUL: untrusted text in it is quoted (printable.h).
inline void check_message(const std::string& message) {
  check(!message.empty(), "empty error message");
  for (const char c : message) {
    check(c != '\n' && c != '\r' && c != '\0', "error message is not one printable line", message);
  }
}

}  // namespace deploy_lstm_fuzz

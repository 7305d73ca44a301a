// Quoting untrusted text (a file name from a manifest, a .npy header, a JSON token) into an
// error message: every error the tools print is one line, whatever the file held.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace deploy_lstm {

// `text` with bytes outside printable ASCII (newlines, NUL, other control characters, bytes
// >= 0x7f) written as \xNN, cut to `max_bytes` of the input with "..." after.
inline std::string printable(std::string_view text, std::size_t max_bytes = 200) {
  std::string out;
  const std::size_t n = text.size() < max_bytes ? text.size() : max_bytes;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (n < text.size()) out += "...";
  return out;
}

}  // namespace deploy_lstm

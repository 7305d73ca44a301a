// The IOSpec JSON of deploy_lstm artifacts; see include/deploy_lstm/io_spec.h.
// A small JSON reader (RFC 8259: objects, arrays, strings with escapes, numbers,
// true/false/null) is enough: Python's json.dumps(allow_nan=False) wrote the text.
// Stricter than Python's json.loads where the two would read a text differently:
// a repeated key in an object (Python keeps the last) and NaN/Infinity (not JSON)
// are refused.
#include "deploy_lstm/io_spec.h"

#include "deploy_lstm/errors.h"
#include "deploy_lstm/npy.h"
#include "deploy_lstm/printable.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace deploy_lstm {
namespace {

class JsonReader {
 public:
  JsonReader(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  Json document() {
    Json v = value(0);
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelLoadError(where_ + ": malformed JSON at offset " + std::to_string(pos_) + ": " + what);
  }

  void skip_space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }

  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }

  void expect(char c) {
    skip_space();
    if (pos_ >= s_.size() || s_[pos_] != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  // After an opening bracket: `item()` for each ','-separated item up to `close`, which it consumes.
  template <class Item>
  void items(char close, Item item) {
    ++pos_;
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == close) {
      ++pos_;
      return;
    }
    while (true) {
      item();
      skip_space();
      if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
      expect(close);
      return;
    }
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth));
    skip_space();
    if (pos_ >= s_.size()) fail("unexpected end of text");
    Json v;
    const char c = s_[pos_];
    if (c == '{') {
      v.kind = Json::Kind::kObject;
      std::set<std::string> keys;
      items('}', [&] {
        skip_space();
        if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
        const std::size_t key_at = pos_;
        std::string key = string();
        if (!keys.insert(key).second) {
          pos_ = key_at;
          fail("duplicate key \"" + printable(key) + "\" in an object; expected each key once (Python's json "
               "would keep the last, this reader the first: refused rather than guessed)");
        }
        expect(':');
        v.fields.emplace_back(std::move(key), value(depth + 1));
      });
      return v;
    }
    if (c == '[') {
      v.kind = Json::Kind::kArray;
      items(']', [&] { v.items.push_back(value(depth + 1)); });
      return v;
    }
    if (c == '"') {
      v.kind = Json::Kind::kString;
      v.string = string();
      return v;
    }
    if (literal("true") || literal("false")) {
      v.kind = Json::Kind::kBool;
      v.boolean = c == 't';
      return v;
    }
    if (literal("null")) return v;
    for (const char* word : {"NaN", "Infinity", "-Infinity"}) {
      if (s_.compare(pos_, std::char_traits<char>::length(word), word) == 0) {
        fail(std::string("non-finite number ") + word + "; expected strict JSON (RFC 8259 has no NaN or Infinity: "
             "write it with json.dumps(..., allow_nan=False), or null)");
      }
    }
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number();
    fail("unexpected character '" + printable(std::string(1, c)) + "'; expected a JSON value");
  }

  // RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, finite as a double.
  Json number() {
    const std::size_t start = pos_;
    const auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      return pos_ - from;
    };
    const auto bad = [&](const char* what) {
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.' ||
                                  s_[pos_] == '+' || s_[pos_] == '-'))
        ++pos_;
      const std::string text = s_.substr(start, pos_ - start);
      pos_ = start;
      fail("bad number '" + printable(text, 40) + "': " + what);
    };
    if (s_[pos_] == '-') ++pos_;
    const std::size_t int_start = pos_;
    const std::size_t int_digits = digits();
    if (int_digits == 0) bad("expected a digit");
    if (int_digits > 1 && s_[int_start] == '0') bad("leading zero");
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) bad("expected a digit after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) bad("expected a digit in the exponent");
    }
    const std::string text = s_.substr(start, pos_ - start);
    Json v;
    v.kind = Json::Kind::kNumber;
    char* end = nullptr;
    v.number = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size()) bad("not a number");
    if (!std::isfinite(v.number)) bad("out of the range of a double (strict JSON numbers are finite)");
    if (integral) {
      errno = 0;
      const long long i = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE) fail("integer out of range '" + printable(text, 40) + "'; expected one that fits in int64");
      v.integral = true;
      v.integer = i;
    }
    return v;
  }

  void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }

  std::string string() {
    ++pos_;  // the opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {  // a surrogate pair
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape '\\" + printable(std::string(1, e)) + "'");
      }
    }
  }

  const std::string& s_;
  std::string where_;
  std::size_t pos_ = 0;
};

}  // namespace

const Json* Json::field(const std::string& key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

const Json* Json::path(const std::vector<std::string>& keys) const {
  const Json* v = this;
  for (const std::string& k : keys) {
    if (v->kind != Kind::kObject) return nullptr;
    v = v->field(k);
    if (v == nullptr) return nullptr;
  }
  return v;
}

Json parse_json(const std::string& text, const std::string& where) { return JsonReader(text, where).document(); }

namespace {

[[noreturn]] void bad_spec(const std::string& where, const std::string& what) {
  throw ModelLoadError(where + ": malformed " + kMetaIo + " I/O contract: " + what);
}

std::vector<TensorSpec> tensor_specs(const Json* list, const char* key, const std::string& where) {
  if (list == nullptr || list->kind != Json::Kind::kArray) bad_spec(where, std::string("no '") + key + "' list");
  std::vector<TensorSpec> specs;
  for (const Json& item : list->items) {
    const Json* name = item.field("name");
    const Json* shape = item.field("shape");
    const Json* dtype = item.field("dtype");
    if (name == nullptr || name->kind != Json::Kind::kString || shape == nullptr ||
        shape->kind != Json::Kind::kArray || dtype == nullptr || dtype->kind != Json::Kind::kString) {
      bad_spec(where, std::string("every entry of '") + key + "' needs a string 'name', a list 'shape', a string 'dtype'");
    }
    // Names, dtypes and axes reach every message about the inputs: no control characters there.
    const auto plain = [&](const std::string& text, const char* what) {
      for (const char c : text) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          bad_spec(where, std::string(what) + " '" + printable(text, 40) + "' has a control character; expected printable text");
      }
    };
    plain(name->string, "name");
    plain(dtype->string, "dtype");
    TensorSpec spec{name->string, {}, dtype->string};
    for (const Json& d : shape->items) {
      if (d.kind == Json::Kind::kString) {
        plain(d.string, "axis");
        spec.shape.push_back(SpecDim{-1, d.string.empty() ? "?" : d.string});
      } else if (d.kind == Json::Kind::kNumber && d.integral && d.integer >= 0) {
        spec.shape.push_back(SpecDim{d.integer, ""});
      } else {
        bad_spec(where, "a dimension of '" + spec.name + "' is neither a size nor an axis name");
      }
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::vector<std::string> output_file_names(const std::optional<IoSpec>& io, std::size_t n) {
  if (io && io->outputs.size() == n) {
    std::vector<std::string> names = io->output_names();
    std::set<std::string> seen;
    bool safe = true;
    for (const std::string& name : names) {
      safe = safe && !name.empty() && name[0] != '.' && seen.insert(name).second;
      for (const char c : name)
        safe = safe && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
    }
    if (safe) return names;
  }
  std::vector<std::string> names;
  for (std::size_t i = 0; i < n; ++i) names.push_back("output_" + std::to_string(i));
  return names;
}

std::string TensorSpec::shape_string() const {
  std::vector<std::string> dims;
  for (const SpecDim& d : shape) dims.push_back(d.dynamic() ? d.axis : std::to_string(d.size));
  return "(" + join(dims) + (dims.size() == 1 ? ",)" : ")");
}

std::vector<std::string> IoSpec::input_names() const {
  std::vector<std::string> names;
  for (const TensorSpec& t : inputs) names.push_back(t.name);
  return names;
}

std::vector<std::string> IoSpec::output_names() const {
  std::vector<std::string> names;
  for (const TensorSpec& t : outputs) names.push_back(t.name);
  return names;
}

void IoSpec::check_inputs(const std::vector<std::vector<int64_t>>& shapes,
                          const std::vector<std::string>& dtypes) const {
  if (shapes.size() != inputs.size() || dtypes.size() != inputs.size()) {
    throw InputError("expected " + std::to_string(inputs.size()) + " inputs (" + join(input_names()) + "), got " +
                     std::to_string(shapes.size()));
  }
  // axis name -> (size, "input 'h0' dim 1"): the first input that fixed it.
  std::map<std::string, std::pair<int64_t, std::string>> axes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorSpec& spec = inputs[i];
    const std::vector<int64_t>& shape = shapes[i];
    const std::string expected = "expected input '" + spec.name + "' of shape " + spec.shape_string();
    if (dtypes[i] != spec.dtype) {
      throw InputError("expected input '" + spec.name + "' of dtype " + spec.dtype + ", got " + dtypes[i] +
                       " (convert it, e.g. arr.astype(np." + spec.dtype + "))");
    }
    if (shape.size() != spec.shape.size()) {
      throw InputError(expected + " (rank " + std::to_string(spec.shape.size()) + "), got rank " +
                       std::to_string(shape.size()) + " shape " + deploy_lstm::shape_string(shape));
    }
    for (std::size_t d = 0; d < shape.size(); ++d) {
      const SpecDim& want = spec.shape[d];
      if (!want.dynamic()) {
        if (shape[d] != want.size) {
          throw InputError(expected + ", got " + deploy_lstm::shape_string(shape) + ": dim " + std::to_string(d) +
                           " must be " + std::to_string(want.size));
        }
        continue;
      }
      const std::string here = "input '" + spec.name + "' dim " + std::to_string(d);
      const auto [it, inserted] = axes.emplace(want.axis, std::make_pair(shape[d], here));
      if (!inserted && it->second.first != shape[d]) {
        throw InputError("inputs disagree on axis '" + want.axis + "': " + it->second.second + " is " +
                         std::to_string(it->second.first) + ", " + here + " is " + std::to_string(shape[d]));
      }
    }
  }
}

IoSpec parse_io_spec(const std::string& json, const std::string& where) {
  const Json doc = parse_json(json, where + " (" + kMetaIo + ")");
  if (doc.kind != Json::Kind::kObject) bad_spec(where, "not a JSON object");
  return IoSpec{tensor_specs(doc.field("inputs"), "inputs", where), tensor_specs(doc.field("outputs"), "outputs", where)};
}

std::optional<std::string> json_string_field(const std::string& json, const std::string& key,
                                             const std::string& where) {
  const Json doc = parse_json(json, where);
  if (doc.kind != Json::Kind::kObject) throw ModelLoadError(where + ": expected a JSON object");
  const Json* v = doc.field(key);
  if (v == nullptr) return std::nullopt;
  if (v->kind != Json::Kind::kString) throw ModelLoadError(where + ": '" + key + "' is not a string");
  return v->string;
}

}  // namespace deploy_lstm

// The IOSpec JSON of deploy_lstm artifacts; see include/deploy_lstm/io_spec.h.
// A small JSON reader (RFC 8259: objects, arrays, strings with escapes, numbers,
// true/false/null) is enough: Python's json.dumps wrote the text.
#include "deploy_lstm/io_spec.h"

#include "deploy_lstm/errors.h"
#include "deploy_lstm/npy.h"

#include <cctype>
#include <cerrno>
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
      items('}', [&] {
        skip_space();
        if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
        std::string key = string();
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
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number();
    fail(std::string("unexpected character '") + c + "'");
  }

  Json number() {
    const std::size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    bool integral = true;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || (c == '-' && pos_ > start)) {
        integral = false;
        ++pos_;
      } else {
        break;
      }
    }
    const std::string text = s_.substr(start, pos_ - start);
    Json v;
    v.kind = Json::Kind::kNumber;
    char* end = nullptr;
    v.number = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || text == "-") fail("bad number '" + text + "'");
    if (integral) {
      errno = 0;
      const long long i = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE) fail("integer out of range '" + text + "'");
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
        default: fail(std::string("bad escape '\\") + e + "'");
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
    TensorSpec spec{name->string, {}, dtype->string};
    for (const Json& d : shape->items) {
      if (d.kind == Json::Kind::kString) {
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

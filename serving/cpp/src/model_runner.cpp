#include "deploy_lstm/model_runner.h"

#include "deploy_lstm/npy.h"
#include "deploy_lstm/tensor_npy.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace deploy_lstm {
namespace {

// Appends the flat names of an argument of `type` called `name` ("hidden" ->
// "hidden[0]", "hidden[1]"); false when it holds anything but Tensors, Tuples, Optionals.
bool flatten_names(const c10::TypePtr& type, const std::string& name, std::vector<std::string>* names) {
  if (type->kind() == c10::TypeKind::TensorType) {
    names->push_back(name);
    return true;
  }
  if (const auto tuple = type->cast<c10::TupleType>()) {
    const auto elements = tuple->elements();
    for (std::size_t i = 0; i < elements.size(); ++i)
      if (!flatten_names(elements[i], name + "[" + std::to_string(i) + "]", names)) return false;
    return true;
  }
  if (const auto optional = type->cast<c10::OptionalType>()) return flatten_names(optional->getElementType(), name, names);
  return false;
}

// The flat tensors a value of `type` holds, when the type fixes it (Tensors and Tuples).
std::optional<std::size_t> static_count(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return 1;
  const auto tuple = type->cast<c10::TupleType>();
  if (!tuple) return std::nullopt;  // a List's length, an Optional's None: known at run time
  std::size_t n = 0;
  for (const c10::TypePtr& e : tuple->elements()) {
    const auto k = static_count(e);
    if (!k) return std::nullopt;
    n += *k;
  }
  return n;
}

// Rebuilds a value of `type` from flat[*next...] (Optional: the value itself).
c10::IValue rebuild(const c10::TypePtr& type, const std::vector<torch::Tensor>& flat, std::size_t* next) {
  if (type->kind() == c10::TypeKind::TensorType) return flat.at((*next)++);
  if (const auto tuple = type->cast<c10::TupleType>()) {
    std::vector<c10::IValue> elements;
    for (const c10::TypePtr& e : tuple->elements()) elements.push_back(rebuild(e, flat, next));
    if (tuple->schema()) return c10::ivalue::Tuple::createNamed(std::move(elements), tuple);  // a NamedTuple
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  const auto optional = type->cast<c10::OptionalType>();
  TORCH_INTERNAL_ASSERT(optional, "flatten_names accepted a type rebuild does not know: ", type->str());
  return rebuild(optional->getElementType(), flat, next);
}

void flatten_value(const c10::IValue& value, const std::string& where, std::vector<torch::Tensor>* flat) {
  if (value.isTensor()) {
    flat->push_back(value.toTensor());
  } else if (value.isTuple()) {
    const auto& elements = value.toTupleRef().elements();
    for (std::size_t i = 0; i < elements.size(); ++i) flatten_value(elements[i], where + "[" + std::to_string(i) + "]", flat);
  } else if (value.isList()) {
    const auto list = value.toListRef();
    for (std::size_t i = 0; i < list.size(); ++i) flatten_value(list[i], where + "[" + std::to_string(i) + "]", flat);
  } else {
    throw RunError(where + " is " + value.tagKind() +
                   "; the runner returns Tensors and (nested) Tuples and Lists of Tensors only");
  }
}

bool safe_file_names(const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (const std::string& n : names) {
    if (n.empty() || n[0] == '.' || !seen.insert(n).second) return false;
    for (const char c : n)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

std::string counts_string(const std::vector<std::size_t>& counts) {
  std::string out;
  for (std::size_t i = 0; i < counts.size(); ++i)
    out += (i == 0 ? "" : i + 1 == counts.size() ? " or " : ", ") + std::to_string(counts[i]);
  return out;
}

}  // namespace

ModelRunner::ModelRunner(const std::string& path) : ModelRunner(load_torchscript(path), path) {}

ModelRunner::ModelRunner(LoadedModule loaded, const std::string& path)
    : path_(path), module_(std::move(loaded.module)) {
  module_.eval();
  const c10::FunctionSchema& schema = module_.get_method("forward").function().getSchema();
  const auto& args = schema.arguments();  // args[0] is self

  std::vector<std::string> shown;
  std::size_t i = 1;
  for (; i < args.size(); ++i) {
    std::vector<std::string> names;
    if (!flatten_names(args[i].type(), args[i].name(), &names)) break;
    arguments_.push_back(Argument{args[i].name(), args[i].type(), names.size(), args[i].default_value().has_value()});
    input_names_.insert(input_names_.end(), names.begin(), names.end());
  }
  for (std::size_t j = 1; j < args.size(); ++j) shown.push_back(args[j].name() + ": " + args[j].type()->annotation_str());
  std::vector<std::string> returns;
  for (const auto& r : schema.returns()) returns.push_back(r.type()->annotation_str());
  signature_ = "forward(" + join(shown) + ") -> " + join(returns);

  for (std::size_t j = i; j < args.size(); ++j) {
    if (!args[j].default_value()) {
      throw ModelLoadError("'" + path + "' " + signature_ + ": argument '" + args[j].name() + ": " +
                           args[j].type()->annotation_str() +
                           "' has no default; the runner passes Tensors and (nested) Tuples of Tensors only "
                           "(give it a default, or wrap the model in a module whose forward takes tensors)");
    }
  }

  // Trailing arguments with defaults may be left out: forward takes the first p
  // arguments for every p from `required` to all of them.
  for (std::size_t a = 0; a < arguments_.size(); ++a)
    if (!arguments_[a].has_default) required_ = a + 1;
  std::size_t count = 0;
  for (std::size_t a = 0; a < required_; ++a) count += arguments_[a].tensors;
  input_counts_.push_back(count);
  for (std::size_t a = required_; a < arguments_.size(); ++a) {
    count += arguments_[a].tensors;
    if (count != input_counts_.back()) input_counts_.push_back(count);
  }

  if (schema.returns().size() == 1) output_count_ = static_count(schema.returns()[0].type());

  if (!loaded.metadata.empty()) {
    const std::string where = "'" + path + "' " + kTorchScriptMetadataFile;
    if (const auto io = json_string_field(loaded.metadata, kMetaIo, where)) io_ = parse_io_spec(*io, where);
  }
  if (io_ && io_->inputs.size() == input_names_.size()) input_names_ = io_->input_names();
}

std::string ModelRunner::inputs_string() const {
  // "src, lengths [, hx[0], hx[1]]": the arguments after `required_` may be left out.
  std::string out;
  std::size_t next = 0;
  for (std::size_t a = 0; a < arguments_.size(); ++a) {
    const std::vector<std::string> names(input_names_.begin() + next, input_names_.begin() + next + arguments_[a].tensors);
    next += arguments_[a].tensors;
    if (names.empty()) continue;
    if (a < required_) {
      out += (out.empty() ? "" : ", ") + join(names);
    } else {
      out += out.empty() ? "[" + join(names) + "]" : " [, " + join(names) + "]";
    }
  }
  return out;
}

std::vector<std::string> ModelRunner::output_names(std::size_t n) const {
  if (io_ && io_->outputs.size() == n && safe_file_names(io_->output_names())) return io_->output_names();
  std::vector<std::string> names;
  for (std::size_t i = 0; i < n; ++i) names.push_back("output_" + std::to_string(i));
  return names;
}

void ModelRunner::check_count(std::size_t n) const {
  if (std::find(input_counts_.begin(), input_counts_.end(), n) != input_counts_.end()) return;
  throw InputError("'" + path_ + "' " + signature_ + " takes " + counts_string(input_counts_) + " input tensors (" +
                   inputs_string() + "), got " + std::to_string(n));
}

void ModelRunner::validate(const std::vector<torch::Tensor>& inputs) const {
  check_count(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].defined()) throw InputError("input '" + input_names_.at(i) + "' is undefined");
  if (io_ && io_->inputs.size() == inputs.size()) check_tensors(*io_, inputs);
}

std::vector<torch::Tensor> ModelRunner::run(const std::vector<torch::Tensor>& inputs) {
  validate(inputs);

  // The longest prefix of arguments that takes inputs.size() tensors.
  std::size_t taken = 0, used = 0, count = 0;
  for (std::size_t a = 0; a < arguments_.size(); ++a) {
    count += arguments_[a].tensors;
    if (count > inputs.size()) break;
    if (count == inputs.size()) used = a + 1;
  }
  std::vector<c10::IValue> stack;
  for (std::size_t a = 0; a < used; ++a) stack.push_back(rebuild(arguments_[a].type, inputs, &taken));
  TORCH_INTERNAL_ASSERT(taken == inputs.size(), "rebuilt ", taken, " of ", inputs.size(), " inputs");

  c10::InferenceMode guard;
  c10::IValue result;
  auto failed = [&](const std::string& reason) {
    std::vector<std::string> got;
    for (std::size_t i = 0; i < inputs.size(); ++i) got.push_back(input_names_.at(i) + "=" + describe(inputs[i]));
    return RunError("forward of '" + path_ + "' failed on " + join(got) + ": " + reason);
  };
  try {
    result = module_.forward(std::move(stack));
  } catch (const c10::Error& e) {
    throw failed(error_reason(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw failed(error_reason(e.what()));
  }
  std::vector<torch::Tensor> flat;
  flatten_value(result, "the result of forward", &flat);
  return flat;
}

}  // namespace deploy_lstm

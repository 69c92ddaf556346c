// The programs' table of model configurations: each entry a name and the configuration's
// compiled runs (unconditional and class-conditional). diffuse-train and
// diffuse-sample fill it from one translation unit per configuration (they compile in
// parallel); a user's own program passes its one configuration (train_main.hpp,
// sample_main.hpp). Light: no network code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/nn/unet_config.hpp"
#include "diffuse/programs/common.hpp"

namespace diffuse::programs {

/// One configuration a program can run. `Run` is the run's function type (a pointer).
template <class Run>
struct ModelEntry {
  std::string name;          ///< e.g. "edm-cifar-small"
  std::size_t classes = 0;   ///< classes of the class-conditional run (0: none)
  Run unconditional = nullptr;  ///< without labels (null: the configuration needs labels)
  Run conditional = nullptr;    ///< with labels 0 .. classes - 1 (null: none)

  /// The run with or without labels; UsageError when the configuration has no such run.
  Run run(bool with_labels) const {
    if (with_labels && !conditional)
      throw UsageError("model '" + name + "' is unconditional: it takes no labels");
    if (!with_labels && !unconditional)
      throw UsageError("model '" + name + "' is class-conditional (" + std::to_string(classes) +
                       " classes): it needs labels");
    return with_labels ? conditional : unconditional;
  }
};

/// The names of a table's configurations (a vector of ModelEntry or of a type derived from it).
template <class Entry>
std::vector<std::string> names_of(const std::vector<Entry>& table) {
  std::vector<std::string> names;
  for (const auto& e : table) names.push_back(e.name);
  return names;
}

/// The entry called `name`; UsageError naming the known ones, and saying so when the name
/// is one of model_names that this build left out (CMake's DIFFUSE_PROGRAM_MODELS).
template <class Entry>
const Entry& find_model(const std::vector<Entry>& table, const std::string& name) {
  for (const auto& e : table)
    if (e.name == name) return e;
  const bool named = std::find(model_names.begin(), model_names.end(), name) != model_names.end();
  throw UsageError("model '" + name + "' is " + (named ? "not built into this program" : "unknown") +
                   " (this program has: " + joined(names_of(table)) + ")" +
                   (named ? "; configure with -DDIFFUSE_PROGRAM_MODELS=...;" + name + " to add it" : ""));
}

/// The table diffuse-train / diffuse-sample fill before main() (register_model).
template <class Entry>
std::vector<Entry>& registered_models() {
  static std::vector<Entry> table;
  return table;
}

/// Adds an entry to registered_models<Entry>(), keeping model_names' order; returns true
/// (for a namespace-scope `static const bool` in the configuration's translation unit).
template <class Entry>
bool register_model(Entry entry) {
  auto& table = registered_models<Entry>();
  auto rank = [](const std::string& n) {
    return std::find(model_names.begin(), model_names.end(), n) - model_names.begin();
  };
  const auto at = std::find_if(table.begin(), table.end(), [&](const Entry& e) {
    return rank(e.name) > rank(entry.name) || (rank(e.name) == rank(entry.name) && e.name > entry.name);
  });
  table.insert(at, std::move(entry));
  return true;
}

}  // namespace diffuse::programs

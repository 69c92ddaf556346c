// Lookup in the registries' tables (sampler_registry.hpp, schedule_registry.hpp): arrays of
// entries with a `name` member.
#pragma once

#include <string>
#include <string_view>

namespace diffuse::diffusion::detail {

/// The entry of `table` called `name`, or nullptr.
template <class Table>
auto find_by_name(const Table& table, std::string_view name) noexcept -> decltype(&table[0]) {
  for (const auto& e : table)
    if (e.name == name) return &e;
  return nullptr;
}

/// The names of `table`'s entries, comma-separated.
template <class Table>
std::string names_joined(const Table& table) {
  std::string s;
  for (const auto& e : table) s += (s.empty() ? "" : ", ") + std::string(e.name);
  return s;
}

}  // namespace diffuse::diffusion::detail

// Post-hoc EMA from the snapshots a training run wrote (train/ema_snapshots.hpp): the
// power-function EMA of any width sigma_rel at the time of any snapshot, as the weighted
// sum of the snapshots up to that time (optim/posthoc_ema.hpp, EDM2 Algorithm 3). Works
// on the files alone, tensor by tensor, whatever the model. Needs Eigen (diffuse::eval).
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/data_error.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/optim/posthoc_ema.hpp"
#include "diffuse/train/checkpoint_info.hpp"
#include "diffuse/train/ema_snapshots.hpp"

namespace diffuse::train {

/// Metadata key of a reconstructed average (how many snapshots it combines).
inline constexpr const char* reconstructed_key = "diffuse.ema_reconstructed_from";

/// One snapshot file: where it is, the model it holds and its profile.
struct EmaSnapshot {
  std::string path;             ///< the file
  std::string model;            ///< its diffuse.model (may be empty)
  optim::EmaProfile profile;    ///< its time (images) and width
};

/// The snapshots in `folder` (files phema-*.safetensors, not reconstructions), by time
/// then width. Throws
/// io::DataError naming the folder when it has none, or a file whose metadata do not give
/// a time > 0 and a width in (0, 0.2887).
inline std::vector<EmaSnapshot> list_power_ema_snapshots(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw io::DataError(folder, "not a folder (expected the ema-snapshots folder of a run)");
  std::vector<EmaSnapshot> r;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || !name.starts_with("phema-") || !name.ends_with(".safetensors")) continue;
    const io::SafetensorsFile f(e.path().string());
    const auto& m = f.metadata();
    if (m.count(reconstructed_key)) continue;  // an earlier reconstruction written here
    auto number = [&](const char* key) {
      const auto it = m.find(key);
      char* end = nullptr;
      const double v = it == m.end() ? 0.0 : std::strtod(it->second.c_str(), &end);
      if (it == m.end() || end == it->second.c_str() || *end != '\0')
        throw io::DataError(f.path(), std::string("not a power-EMA snapshot (no number in metadata ") + key + ")");
      return v;
    };
    EmaSnapshot s{f.path(), m.count(keys::model) ? m.at(keys::model) : "", {number(ema_images_key), number(ema_sigma_rel_key)}};
    if (!(s.profile.images > 0) || !(s.profile.sigma_rel > 0 && s.profile.sigma_rel < optim::max_sigma_rel))
      throw io::DataError(f.path(), "a snapshot needs a time > 0 and a width in (0, 0.2887)");
    r.push_back(std::move(s));
  }
  if (r.empty()) throw io::DataError(folder, "no power-EMA snapshots (phema-*.safetensors) in this folder");
  std::sort(r.begin(), r.end(), [](const EmaSnapshot& a, const EmaSnapshot& b) {
    return a.profile.images != b.profile.images ? a.profile.images < b.profile.images
                                                : a.profile.sigma_rel < b.profile.sigma_rel;
  });
  return r;
}

/// What reconstruct_power_ema did.
struct EmaReconstruction {
  std::vector<EmaSnapshot> used;  ///< the snapshots combined (those up to the wanted time)
  optim::PosthocEma fit;          ///< their coefficients and the profile's relative error
};

/// Writes to `out` (atomically) the power-function EMA `wanted` (width, and a time that
/// is one of the snapshots') as the combination of the snapshots up to that time: plain
/// weights with the snapshots' tensor names and model, and metadata saying the width and
/// time. Throws io::DataError naming the file when the time is no snapshot's, when
/// snapshots disagree on the model or their tensors, or std::invalid_argument for a width
/// out of range.
inline EmaReconstruction reconstruct_power_ema(const std::vector<EmaSnapshot>& snapshots, optim::EmaProfile wanted,
                                               const std::string& out) {
  EmaReconstruction r;
  for (const EmaSnapshot& s : snapshots)
    if (s.profile.images <= wanted.images) r.used.push_back(s);
  if (std::none_of(r.used.begin(), r.used.end(), [&](const EmaSnapshot& s) { return s.profile.images == wanted.images; })) {
    std::string times;
    for (const EmaSnapshot& s : snapshots) times += (times.empty() ? "" : ", ") + std::to_string(std::uint64_t(s.profile.images));
    throw io::DataError(snapshots.empty() ? out : std::filesystem::path(snapshots[0].path).parent_path().string(),
                        "no snapshot at " + std::to_string(std::uint64_t(wanted.images)) +
                            " images (snapshots at " + times + ")");
  }
  std::vector<optim::EmaProfile> profiles;
  for (const EmaSnapshot& s : r.used) profiles.push_back(s.profile);
  r.fit = optim::posthoc_ema_coefficients(profiles, wanted);

  std::map<std::string, std::pair<std::vector<std::size_t>, std::vector<double>>> sum;  // name -> shape, values
  for (std::size_t i = 0; i < r.used.size(); ++i) {
    const EmaSnapshot& s = r.used[i];
    if (s.model != r.used[0].model)
      throw io::DataError(s.path, "holds model '" + s.model + "', but " + r.used[0].path + " holds '" + r.used[0].model + "'");
    const io::SafetensorsFile f(s.path);
    const std::vector<std::string> names = f.names();
    if (i > 0 && names.size() != sum.size())
      throw io::DataError(s.path, std::to_string(names.size()) + " tensors, but " + r.used[0].path + " has " +
                                      std::to_string(sum.size()));
    for (const std::string& name : names) {
      const std::vector<std::size_t>& shape = f.info(name).shape;
      auto it = sum.find(name);
      std::size_t count = 1;
      for (std::size_t d : shape) count *= d;
      if (i == 0) it = sum.emplace(name, std::pair{shape, std::vector<double>(count)}).first;
      else if (it == sum.end() || it->second.first != shape)
        throw io::DataError(s.path, "tensor '" + name + "' is not in " + r.used[0].path + " with this shape");
      const std::vector<float> v = f.read_vector<float>(name, shape);
      const double c = r.fit.coefficients[i];
      for (std::size_t j = 0; j < v.size(); ++j) it->second.second[j] += c * double(v[j]);
    }
  }
  io::write_atomically(out, [&](const std::string& tmp) {
    io::SafetensorsWriter w;
    for (const auto& [name, t] : sum) {
      const std::vector<float> v(t.second.begin(), t.second.end());
      w.add<float>(name, t.first, std::span<const float>(v));
    }
    if (!r.used[0].model.empty()) w.set_metadata(keys::model, r.used[0].model);
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", wanted.sigma_rel);
    w.set_metadata(ema_sigma_rel_key, text);
    w.set_metadata(ema_images_key, std::to_string(std::uint64_t(wanted.images)));
    w.set_metadata(reconstructed_key, std::to_string(r.used.size()) + " snapshots");
    w.write(tmp);
  });
  return r;
}

}  // namespace diffuse::train

// Reading and writing safetensors files (the format of Hugging Face's `safetensors`):
//
//   u64 little-endian N | N bytes of JSON header | data
//   header: {"<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...,
//            "__metadata__": {"<key>": "<value>", ...}}   offsets relative to the data
//
// The header is JSON, read and written with nlohmann::json; on top of the JSON syntax every
// rule of the format is checked (structure, offsets within the file, sizes that match dtype
// and shape, with overflow checks), and every error names the file and the tensor. This file
// knows the format only: the mapping of a network's parameters to PyTorch's names and
// layouts is nn/state_dict.hpp.
//
// Not here: memory mapping (files are read whole: checkpoints of these models are a few
// MB), writing dtypes other than F32 and F64 (F16 and BF16 are read), big-endian hosts.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace diffuse::io {

static_assert(std::endian::native == std::endian::little, "diffuse::io::safetensors: little-endian hosts only");

/// Any problem with a safetensors file; the message names the file and, where it
/// applies, the tensor and what was expected.
class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One tensor entry of a header.
struct TensorInfo {
  std::string dtype;               ///< "F32", "F64", ...
  std::vector<std::size_t> shape;  ///< PyTorch order
  ///@{
  /// Byte range [begin, end) within the data section.
  std::size_t begin = 0, end = 0;
  ///@}
};

namespace detail {

/// Bytes of a tensor of `shape` with elements of `element_size` bytes, or nullopt when the
/// product overflows std::size_t (a header is untrusted input; a zero dimension gives 0).
inline std::optional<std::size_t> checked_bytes(std::span<const std::size_t> shape, std::size_t element_size) {
  if (std::find(shape.begin(), shape.end(), std::size_t{0}) != shape.end()) return 0;
  std::size_t n = element_size;
  for (std::size_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

inline std::string shape_text(std::span<const std::size_t> s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) t += ", ";
    t += std::to_string(s[i]);
  }
  t += "]";
  return t;
}

inline std::size_t dtype_size(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

// IEEE half (F16) and bfloat16 (BF16) to float: BF16 is the top half of a float; F16
// has 5 exponent bits (bias 15) and 10 mantissa bits, with subnormals, Inf and NaN.
inline float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t{h} << 16); }
inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = static_cast<float>(man) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));  // Inf, NaN
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

// Reads a safetensors header (JSON, parsed by nlohmann::json) into the tensor table and
// the metadata, checking the format's structure: an object of tensors, each with exactly
// dtype (a string), shape (non-negative integers) and data_offsets ([begin, end]), and an
// optional "__metadata__" object of strings. A name may appear once (a JSON parser alone
// would keep the last). Errors name the file and, where it applies, the tensor.
inline std::map<std::string, TensorInfo> parse_header(std::string_view text, const std::string& file,
                                                      std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& what) -> SafetensorsError {
    return SafetensorsError("diffuse::io: " + file + ": corrupt header: " + what);
  };
  std::string duplicate;
  const auto count_keys = [&, seen = std::map<std::string, int>{}](int depth, nlohmann::json::parse_event_t event,
                                                                   nlohmann::json& parsed) mutable {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && ++seen[parsed.get<std::string>()] == 2 &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text.begin(), text.end(), count_keys);
  } catch (const nlohmann::json::parse_error& e) {
    throw fail(std::string("not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw fail("the header is not a JSON object");
  if (!duplicate.empty()) throw fail("tensor '" + duplicate + "' appears twice");
  auto sizes = [&](const nlohmann::json& j, const std::string& what) {
    if (!j.is_array()) throw fail(what + " must be an array of non-negative integers");
    std::vector<std::size_t> v;
    for (const auto& x : j) {
      if (!x.is_number_unsigned()) throw fail(what + " must be an array of non-negative integers (found " + x.dump() + ")");
      v.push_back(x.get<std::size_t>());
    }
    return v;
  };
  std::map<std::string, TensorInfo> out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw fail("__metadata__ must be an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) throw fail("metadata '" + key + "' is not a string");
        metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) throw fail(where + " is not an object");
    for (const auto& [key, value] : entry.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets") throw fail(where + ": unknown key '" + key + "'");
    if (!entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw fail(where + ": needs dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) throw fail(where + ": dtype must be a string");
    TensorInfo t;
    t.dtype = entry["dtype"].get<std::string>();
    t.shape = sizes(entry["shape"], where + ": shape");
    const auto offsets = sizes(entry["data_offsets"], where + ": data_offsets");
    if (offsets.size() != 2 || offsets[1] < offsets[0]) throw fail(where + ": data_offsets must be [begin, end]");
    t.begin = offsets[0];
    t.end = offsets[1];
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace detail

/// A safetensors file read into memory.
class SafetensorsFile {
 public:
  /// Reads and validates `path` (header syntax, offsets within the file, sizes that
  /// match dtype and shape). Throws SafetensorsError.
  explicit SafetensorsFile(std::string path) : path_(std::move(path)) {
    std::ifstream f(path_, std::ios::binary | std::ios::ate);
    if (!f) throw SafetensorsError("diffuse::io: cannot open " + path_);
    const std::streamoff size = f.tellg();
    f.seekg(0);
    std::vector<char> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !f.read(bytes.data(), size)) throw SafetensorsError("diffuse::io: cannot read " + path_);
    if (bytes.size() < 8)
      throw SafetensorsError("diffuse::io: " + path_ + ": truncated file (" + std::to_string(bytes.size()) +
                             " bytes, a safetensors file starts with an 8-byte header size)");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    if (n > bytes.size() - 8)
      throw SafetensorsError("diffuse::io: " + path_ + ": truncated file (header of " + std::to_string(n) +
                             " bytes announced, " + std::to_string(bytes.size() - 8) + " present)");
    tensors_ = detail::parse_header(std::string_view(bytes.data() + 8, std::size_t(n)), path_, metadata_);
    data_.assign(bytes.begin() + 8 + std::ptrdiff_t(n), bytes.end());
    for (const auto& [name, t] : tensors_) {
      const std::size_t es = detail::dtype_size(t.dtype);
      if (es == 0) throw SafetensorsError("diffuse::io: " + path_ + ": tensor '" + name + "': unknown dtype '" + t.dtype + "'");
      const std::optional<std::size_t> bytes_needed = detail::checked_bytes(t.shape, es);
      if (!bytes_needed)
        throw SafetensorsError("diffuse::io: " + path_ + ": tensor '" + name + "': shape " + detail::shape_text(t.shape) +
                               " has too many elements (its size overflows 64 bits)");
      if (t.end - t.begin != *bytes_needed)
        throw SafetensorsError("diffuse::io: " + path_ + ": tensor '" + name + "': data_offsets span " +
                               std::to_string(t.end - t.begin) + " bytes, but " + t.dtype + " " +
                               detail::shape_text(t.shape) + " needs " + std::to_string(*bytes_needed));
      if (t.end > data_.size())
        throw SafetensorsError("diffuse::io: " + path_ + ": truncated file: tensor '" + name + "' ends at byte " +
                               std::to_string(t.end) + " of the data, which has " + std::to_string(data_.size()));
    }
    // The format's rule: the tensors tile the data section exactly, without holes or
    // overlaps, and nothing follows the last one.
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (const auto& kv : tensors_) ranges.emplace_back(kv.second.begin, kv.second.end);
    std::sort(ranges.begin(), ranges.end());
    std::size_t covered = 0;
    for (const auto& [b, e] : ranges) {
      if (b != covered)
        throw SafetensorsError("diffuse::io: " + path_ + ": corrupt header: tensor data " +
                               (b < covered ? "overlaps" : "leaves a hole") + " at byte " + std::to_string(b));
      covered = e;
    }
    if (covered != data_.size())
      throw SafetensorsError("diffuse::io: " + path_ + ": " + std::to_string(data_.size() - covered) +
                             " bytes of trailing data after the last tensor (a damaged or foreign file?)");
  }

  const std::string& path() const noexcept { return path_; }  ///< The file's path.
  /// Whether the file holds tensor `name`.
  bool contains(std::string_view name) const { return tensors_.find(std::string(name)) != tensors_.end(); }
  /// The names of all tensors, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> r;
    for (const auto& kv : tensors_) r.push_back(kv.first);
    return r;
  }
  /// The header's "__metadata__" entries.
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  /// The entry of `name`; throws naming the file and the tensor when it is missing.
  const TensorInfo& info(std::string_view name) const {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end())
      throw SafetensorsError("diffuse::io: " + path_ + ": missing tensor '" + std::string(name) + "'");
    return it->second;
  }

  /// Copies tensor `name` into `out` as T, checking that its shape is `shape` and its
  /// dtype F32 or F64.
  template <class T>
  void read(std::string_view name, std::span<const std::size_t> shape, std::span<T> out) const {
    const TensorInfo& t = info(name);
    const std::string where = "diffuse::io: " + path_ + ": tensor '" + std::string(name) + "': ";
    if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
      throw SafetensorsError(where + "expected shape " + detail::shape_text(shape) + ", found " +
                             detail::shape_text(t.shape));
    std::size_t count = 1;
    for (std::size_t d : shape) count *= d;
    if (out.size() != count)
      throw SafetensorsError(where + "destination holds " + std::to_string(out.size()) + " elements, expected " +
                             std::to_string(count));
    const char* src = data_.data() + t.begin;
    if (t.dtype == "F32") {
      for (std::size_t i = 0; i < count; ++i) {
        float v;
        std::memcpy(&v, src + 4 * i, 4);
        out[i] = T(v);
      }
    } else if (t.dtype == "F64") {
      for (std::size_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = T(v);
      }
    } else if (t.dtype == "F16" || t.dtype == "BF16") {
      const bool bf = t.dtype == "BF16";
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        out[i] = T(bf ? detail::bf16_to_float(v) : detail::f16_to_float(v));
      }
    } else {
      throw SafetensorsError(where + "expected dtype F32, F64, F16 or BF16, found " + t.dtype);
    }
  }

  /// The whole tensor as a vector (shape checked as in read()).
  template <class T = float>
  std::vector<T> read_vector(std::string_view name, std::span<const std::size_t> shape) const {
    std::size_t count = 1;
    for (std::size_t d : shape) count *= d;
    std::vector<T> v(count);
    read<T>(name, shape, std::span<T>(v));
    return v;
  }
  /// The whole tensor as a vector, the shape given as a list, e.g. read_vector("w", {3, 4}).
  template <class T = float>
  std::vector<T> read_vector(std::string_view name, std::initializer_list<std::size_t> shape) const {
    return read_vector<T>(name, std::span<const std::size_t>(shape.begin(), shape.size()));
  }

 private:
  std::string path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> data_;
};

/// Collects tensors and writes one safetensors file (dtype F32 or F64 by element type).
class SafetensorsWriter {
 public:
  /// Adds tensor `name` of `shape` (PyTorch order) with `values` (F32 for float, F64 for
  /// double). Throws SafetensorsError when values.size() is not the shape's element count.
  template <class T>
  void add(std::string name, std::vector<std::size_t> shape, std::span<const T> values) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    std::size_t count = 1;
    for (std::size_t d : shape) count *= d;
    if (count != values.size())
      throw SafetensorsError("diffuse::io: tensor '" + name + "': shape " + detail::shape_text(shape) + " needs " +
                             std::to_string(count) + " values, got " + std::to_string(values.size()));
    Entry e{std::move(name), std::is_same_v<T, float> ? "F32" : "F64", std::move(shape), {}};
    e.bytes.resize(values.size() * sizeof(T));
    std::memcpy(e.bytes.data(), values.data(), e.bytes.size());
    entries_.push_back(std::move(e));
  }
  /// Sets a "__metadata__" entry (replacing one of the same key).
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  /// Writes the file at `path` (directly; io::write_atomically makes it atomic). Throws
  /// SafetensorsError when the file cannot be created or written.
  void write(const std::string& path) const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::size_t offset = 0;
    for (const auto& e : entries_) {
      header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
      offset += e.bytes.size();
    }
    // Control characters are escaped; bytes that are not UTF-8 (a file name on Linux may hold
    // any) become U+FFFD, so that every JSON reader accepts the header.
    std::string h = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
    std::ofstream f(path, std::ios::binary);
    if (!f) throw SafetensorsError("diffuse::io: cannot create " + path);
    const std::uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(h.data(), std::streamsize(h.size()));
    for (const auto& e : entries_) f.write(e.bytes.data(), std::streamsize(e.bytes.size()));
    f.close();  // flushes: a full disk shows here, not in the destructor
    if (!f) throw SafetensorsError("diffuse::io: error writing " + path);
  }

 private:
  struct Entry {
    std::string name, dtype;
    std::vector<std::size_t> shape;
    std::vector<char> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace diffuse::io

// Reading and writing safetensors files (the format of Hugging Face's `safetensors`):
//
//   u64 little-endian N | N bytes of JSON header | data
//   header: {"<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...,
//            "__metadata__": {"<key>": "<value>", ...}}   offsets relative to the data
//
// The header is parsed by a small hand-written JSON reader that accepts exactly what
// the format needs (objects, arrays, strings, non-negative integers; other scalars are
// parsed and ignored): no dependency for a header-only library, and every error can name
// the file, the tensor and what was expected. This file knows the format only: the
// mapping of a network's parameters to PyTorch's names and layouts is nn/state_dict.hpp.
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
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

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

// A JSON reader for safetensors headers. Errors carry the byte position.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& file) : s_(text), file_(file) {}

  std::map<std::string, TensorInfo> parse(std::map<std::string, std::string>& metadata) {
    std::map<std::string, TensorInfo> out;
    expect('{');
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        std::string name = string();
        expect(':');
        if (name == "__metadata__") {
          object([&](const std::string& key) { metadata[key] = string(); });
        } else {
          if (out.count(name)) fail("tensor '" + name + "' appears twice");
          out[name] = tensor(name);
        }
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        break;
      }
    }
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the header object");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw SafetensorsError("diffuse::io: " + file_ + ": corrupt header at byte " + std::to_string(i_) + ": " + what);
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end of header");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "', found '" + s_[i_] + "'");
    ++i_;
  }
  std::string string() {
    expect('"');
    std::string r;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        r += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      c = s_[i_++];
      switch (c) {
        case '"': case '\\': case '/': r += c; break;
        case 'b': r += '\b'; break;
        case 'f': r += '\f'; break;
        case 'n': r += '\n'; break;
        case 'r': r += '\r'; break;
        case 't': r += '\t'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            cp = cp * 16 + unsigned(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                    : h >= 'A' && h <= 'F' ? h - 'A' + 10 : (fail("bad \\u escape"), 0));
          }
          // UTF-8 (surrogate pairs are kept as two 3-byte sequences: names are ASCII in practice)
          if (cp < 0x80) r += char(cp);
          else if (cp < 0x800) r += {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
          else r += {char(0xE0 | (cp >> 12)), char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
          break;
        }
        default: fail(std::string("bad escape \\") + c);
      }
    }
    return r;
  }
  std::size_t integer() {
    skip_ws();
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a non-negative integer");
    std::size_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const std::size_t d = std::size_t(s_[i_++] - '0');
      if (v > (SIZE_MAX - d) / 10) fail("integer too large");
      v = v * 10 + d;
    }
    return v;
  }
  std::vector<std::size_t> int_array() {
    std::vector<std::size_t> v;
    expect('[');
    if (peek() == ']') {
      ++i_;
      return v;
    }
    for (;;) {
      v.push_back(integer());
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect(']');
      return v;
    }
  }
  template <class F>
  void object(F&& member) {
    expect('{');
    if (peek() == '}') {
      ++i_;
      return;
    }
    for (;;) {
      std::string key = string();
      expect(':');
      member(key);
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return;
    }
  }
  TensorInfo tensor(const std::string& name) {
    TensorInfo t;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    object([&](const std::string& key) {
      if (key == "dtype") {
        t.dtype = string();
        has_dtype = true;
      } else if (key == "shape") {
        t.shape = int_array();
        has_shape = true;
      } else if (key == "data_offsets") {
        auto o = int_array();
        if (o.size() != 2 || o[1] < o[0]) fail("tensor '" + name + "': data_offsets must be [begin, end]");
        t.begin = o[0];
        t.end = o[1];
        has_offsets = true;
      } else {
        fail("tensor '" + name + "': unknown key '" + key + "'");
      }
    });
    if (!has_dtype || !has_shape || !has_offsets)
      fail("tensor '" + name + "': needs dtype, shape and data_offsets");
    return t;
  }

  std::string_view s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

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
    detail::HeaderParser parser(std::string_view(bytes.data() + 8, std::size_t(n)), path_);
    tensors_ = parser.parse(metadata_);
    data_.assign(bytes.begin() + 8 + std::ptrdiff_t(n), bytes.end());
    for (const auto& [name, t] : tensors_) {
      std::size_t count = 1;
      for (std::size_t d : t.shape) count *= d;
      const std::size_t es = detail::dtype_size(t.dtype);
      if (es == 0) throw SafetensorsError("diffuse::io: " + path_ + ": tensor '" + name + "': unknown dtype '" + t.dtype + "'");
      if (t.end - t.begin != count * es)
        throw SafetensorsError("diffuse::io: " + path_ + ": tensor '" + name + "': data_offsets span " +
                               std::to_string(t.end - t.begin) + " bytes, but " + t.dtype + " " +
                               detail::shape_text(t.shape) + " needs " + std::to_string(count * es));
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
    std::string h = "{";
    auto quoted = [](const std::string& s) {
      std::string q = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') q += '\\';
        q += c;
      }
      return q + "\"";
    };
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [k, v] : metadata_) {
        if (!first) h += ",";
        h += quoted(k);
        h += ":";
        h += quoted(v);
        first = false;
      }
      h += "}";
    }
    std::size_t offset = 0;
    for (const auto& e : entries_) {
      if (h.size() > 1) h += ",";
      h += quoted(e.name);
      h += ":{\"dtype\":\"";
      h += e.dtype;
      h += "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) {
        if (i) h += ",";
        h += std::to_string(e.shape[i]);
      }
      h += "],\"data_offsets\":[";
      h += std::to_string(offset);
      h += ",";
      h += std::to_string(offset + e.bytes.size());
      h += "]}";
      offset += e.bytes.size();
    }
    h += "}";
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

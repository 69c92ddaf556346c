// The error every reader of user files throws: a message that names the file and
// says what was expected and what was found.
#pragma once

#include <stdexcept>
#include <string>

/// Files: IDX data sets, image files and folders, safetensors checkpoints, atomic
/// writes. Image and data set readers need zlib and stb (the CMake target diffuse::io).
namespace diffuse::io {

/// A file that cannot be used: missing, unreadable, malformed, truncated or of the wrong size.
class DataError : public std::runtime_error {
 public:
  /// The message is "<path>: <what>".
  DataError(const std::string& path, const std::string& what) : std::runtime_error(path + ": " + what) {}
};

}  // namespace diffuse::io

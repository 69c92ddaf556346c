// The error every reader of user files throws: a message that names the file and
// says what was expected and what was found.
#pragma once

#include <stdexcept>
#include <string>

namespace diffuse::io {

/// A file that cannot be used: missing, unreadable, malformed, truncated or of the wrong size.
class DataError : public std::runtime_error {
 public:
  DataError(const std::string& path, const std::string& what) : std::runtime_error(path + ": " + what) {}
};

}  // namespace diffuse::io

// Writing a file so that a crash never leaves it half written: the content goes to
// "<path>.tmp", is flushed to disk, and then renamed over <path> in one step. Readers
// see either the old file or the new one.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "diffuse/io/data_error.hpp"

namespace diffuse::io {

/// Calls write(tmp_path) to produce the file under a temporary name, then syncs and
/// renames it to `path`. On any error the temporary file is removed and `path` is left
/// as it was.
template <class Write>
void write_atomically(const std::string& path, Write&& write) {
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
    // The data must be on disk before the rename makes it the file of record.
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd < 0 || ::fsync(fd) != 0) {
      if (fd >= 0) ::close(fd);
      throw DataError(path, "cannot flush the new file to disk");
    }
    ::close(fd);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw DataError(path, "cannot move the new file into place: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

}  // namespace diffuse::io

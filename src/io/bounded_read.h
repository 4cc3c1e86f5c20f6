// Reading a whole small file (a config, a tokenizer, a tuning cache, a text to evaluate) without
// trusting the path: it must be a regular file (a FIFO would block forever, /dev/zero or a symlink
// to it would grow without end, a folder is a user's mix-up), and its size is capped per kind of
// file BEFORE anything is read. Every reader of such files goes through here.
#pragma once

#include <cstdint>
#include <string>

namespace qrt::io {

// Caps per kind of file. Real files sit far below them (a Llama-3 tokenizer.json is ~9 MB, a
// config.json a few KB); the caps only stop a hostile or mistaken path.
inline constexpr uint64_t kMaxConfigFileBytes = uint64_t{64} << 20;     // *.json configs, --config, tuning cache
inline constexpr uint64_t kMaxTokenizerFileBytes = uint64_t{256} << 20; // tokenizer.json
inline constexpr uint64_t kMaxTemplateFileBytes = uint64_t{16} << 20;   // chat_template.jinja
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{256} << 20;      // perplexity -f, quantize --calib

// What a file is, described for a message: "a folder", "a FIFO", "a character device", ...
// Throws qrt::Error naming `path` when `path` does not exist or cannot be examined:
//   InvalidInput for a missing file, when it is not a regular file or when it is
//   larger than `max_bytes` ("<path>: a FIFO, not a regular file; expected <what>").
// Returns the size in bytes. Symlinks are followed (a link to a regular file is fine).
uint64_t check_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what);

// check_regular_file, then the whole content. The file is opened non-blocking and checked again
// after opening (a path swapped for a FIFO in between cannot hang the read), and reading stops
// past `max_bytes` (a file that grows while read is refused, never followed).
std::string read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& what);

}  // namespace qrt::io

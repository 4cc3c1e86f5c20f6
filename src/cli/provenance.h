// What made a quantized folder: written by `qrt quantize` as OUT/qrt_provenance.json, a file of its
// own that transformers and the other loaders never read (config.json stays as they expect it).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace qrt::cli {

// The file name in the output folder.
inline constexpr const char* kProvenanceFile = "qrt_provenance.json";

// SHA-256 of a file's bytes, lowercase hex (OpenSSL). Throws qrt::Error naming the file.
std::string sha256_of_file(const std::string& path);

// {"file", "bytes", "sha256"} of a calibration (or any input) file.
nlohmann::ordered_json file_identity(const std::string& path);

// {"version", "git_commit", "build"} of this qrt.
nlohmann::ordered_json qrt_identity();

// Now, UTC, as 2026-12-05T10:11:12Z.
std::string utc_timestamp();

}  // namespace qrt::cli

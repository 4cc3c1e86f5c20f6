// See provenance.h.
#include "cli/provenance.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

#include "cli/build_info.h"
#include "qrt/error.h"

namespace qrt::cli {

std::string sha256_of_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw invalid_input(path + ": cannot open: " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw internal_error("SHA-256: OpenSSL init failed");
  unsigned char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0)
    if (EVP_DigestUpdate(ctx.get(), buf, got) != 1) throw internal_error("SHA-256: OpenSSL update failed");
  if (std::ferror(f.get())) throw io_error(path + ": read failed");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) throw internal_error("SHA-256: OpenSSL final failed");
  static const char* const kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

nlohmann::ordered_json file_identity(const std::string& path) {
  nlohmann::ordered_json j;
  j["file"] = path;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (f && std::fseek(f.get(), 0, SEEK_END) == 0) j["bytes"] = static_cast<int64_t>(std::ftell(f.get()));
  j["sha256"] = sha256_of_file(path);
  return j;
}

nlohmann::ordered_json qrt_identity() {
  nlohmann::ordered_json j;
  j["version"] = qrt_version();
  j["git_commit"] = qrt_git_commit();
  j["build"] = built_with_cuda() ? "CUDA" : "CPU only";
  return j;
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace qrt::cli

// Locating and loading libcomba_sentencepiece (see sentencepiece_library.h).
//
// dlmopen(LM_ID_NEWLM): the library, libsentencepiece and everything they need (their own
// libstdc++ and libc among them) load into a link-map namespace of their own, so that no
// symbol of theirs is bound to or from anything of ours. Lighter isolation does not hold:
// RTLD_LOCAL alone still binds libsentencepiece's FLAGS_minloglevel to libc10's (the global
// scope is searched first); RTLD_DEEPBIND binds it to its own, but also binds std::cerr to
// libstdc++'s own storage, which is never constructed when the program has a copy
// relocation of std::cerr (any PIE program that uses it): SentencePiece's first log line
// then crashes. What this costs: memory may not change hands and exceptions may not cross
// between the namespaces, which the C interface already rules out (sentencepiece_abi.h).
// The handle is never closed: the code stays mapped for the process's lifetime.
#include "sentencepiece_library.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "comba/core/file_util.h"

namespace comba::io::detail {

namespace {

#ifdef COMBA_HAS_SENTENCEPIECE

struct LoadResult {
  std::unique_ptr<SentencePieceLibrary> library;
  std::string reason;
};

std::string canonical(const std::string& path) {
  const std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr), &std::free);
  return resolved ? std::string(resolved.get()) : path;
}

// The file of the program or shared library this function was linked into: the io code
// is a static archive, so it lives in libcomba_io.so or in the program itself.
std::string own_object_file() {
  Dl_info info{};
  link_map* map = nullptr;
  if (dladdr1(reinterpret_cast<void*>(&own_object_file), &info, reinterpret_cast<void**>(&map),
              RTLD_DL_LINKMAP) == 0 || map == nullptr) {
    return "";
  }
  // The main program's link map has an empty name (dladdr reports argv[0] for it, which
  // may be relative to another working directory).
  if (map->l_name == nullptr || map->l_name[0] == '\0') return canonical("/proc/self/exe");
  return canonical(map->l_name);
}

std::vector<std::string> candidates() {
  std::vector<std::string> out;
  const std::string own = own_object_file();
  if (!own.empty()) out.push_back(core::join_path(core::parent_directory(own), COMBA_SENTENCEPIECE_FILE_NAME));
  out.push_back(COMBA_SENTENCEPIECE_BUILD_PATH);
  out.push_back(COMBA_SENTENCEPIECE_INSTALL_PATH);
  return out;
}

template <typename Fn>
bool resolve(void* handle, const char* name, Fn* out, std::string* error) {
  *out = reinterpret_cast<Fn>(::dlsym(handle, name));
  if (*out == nullptr) *error = std::string("has no symbol ") + name;
  return *out != nullptr;
}

// Loads one candidate; on failure returns null and says why in `error`.
std::unique_ptr<SentencePieceLibrary> open_library(const std::string& path, std::string* error) {
  void* handle = ::dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    *error = why ? why : "dlmopen failed";
    // The new namespace's libc takes static TLS from glibc's reserve for dlmopen.
    if (error->find("static TLS") != std::string::npos) {
      *error += " (GLIBC_TUNABLES=glibc.rtld.optional_static_tls=<bytes> enlarges that reserve)";
    }
    return nullptr;
  }
  comba_spm_abi_version_fn version = nullptr;
  if (!resolve(handle, "comba_spm_abi_version", &version, error)) return nullptr;
  if (version() != COMBA_SPM_ABI_VERSION) {
    *error = "interface version " + std::to_string(version()) + ", expected " +
             std::to_string(COMBA_SPM_ABI_VERSION) + " (a stale build?)";
    return nullptr;
  }
  auto lib = std::make_unique<SentencePieceLibrary>();
  lib->path = path;
  const bool ok = resolve(handle, "comba_spm_last_error", &lib->last_error, error) &&
                  resolve(handle, "comba_spm_load", &lib->load, error) &&
                  resolve(handle, "comba_spm_free", &lib->free_model, error) &&
                  resolve(handle, "comba_spm_encode", &lib->encode, error) &&
                  resolve(handle, "comba_spm_decode", &lib->decode, error) &&
                  resolve(handle, "comba_spm_piece_size", &lib->piece_size, error) &&
                  resolve(handle, "comba_spm_special_id", &lib->special_id, error) &&
                  resolve(handle, "comba_spm_id_to_piece", &lib->id_to_piece, error) &&
                  resolve(handle, "comba_spm_piece_to_id", &lib->piece_to_id, error) &&
                  resolve(handle, "comba_spm_train", &lib->train, error);
  return ok ? std::move(lib) : nullptr;
}

LoadResult load() {
  LoadResult result;
  std::string tried;
  const auto attempt = [&](const std::string& path) {
    std::string error;
    result.library = open_library(path, &error);
    if (!result.library) tried += "\n  " + path + ": " + error;
    return result.library != nullptr;
  };
  const char* env = std::getenv(kSentencePieceLibraryEnv);
  if (env != nullptr && env[0] != '\0') {
    if (!attempt(env)) {
      result.reason = std::string("cannot load SentencePiece support from ") + kSentencePieceLibraryEnv + "=" + env +
                      ":" + tried;
    }
    return result;
  }
  for (const std::string& path : candidates()) {
    // A missing file is no news; dlmopen's own message for one that exists is.
    if (!core::path_exists(path)) {
      tried += "\n  " + path + ": no such file";
      continue;
    }
    if (attempt(path)) return result;
  }
  if (attempt(COMBA_SENTENCEPIECE_FILE_NAME)) return result;
  result.reason = std::string("cannot load SentencePiece support (") + COMBA_SENTENCEPIECE_FILE_NAME +
                  "); tried:" + tried + "\nset " + kSentencePieceLibraryEnv + " to the library's path";
  return result;
}

#else

struct LoadResult {
  std::unique_ptr<SentencePieceLibrary> library;
  std::string reason = "this build has no SentencePiece (install libsentencepiece-dev and reconfigure)";
};

LoadResult load() { return {}; }

#endif

const LoadResult& loaded() {
  static const LoadResult result = load();
  return result;
}

}  // namespace

const SentencePieceLibrary* sentencepiece_library() { return loaded().library.get(); }

const std::string& sentencepiece_unavailable_reason() { return loaded().reason; }

}  // namespace comba::io::detail

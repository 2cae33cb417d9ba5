#include "coordinator/params/parameter_store.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kiln::coordinator {
namespace {

using Key = std::array<unsigned char, ParameterStore::kKeyBytes>;
using kiln::v1::Parameter;

constexpr std::string_view kKeyPrefix = "param/";
constexpr int kNonceBytes = 12;
constexpr int kTagBytes = 16;

std::string StoreKey(std::string_view name) {
  return absl::StrCat("param/", absl::string_view(name.data(), name.size()));
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

absl::StatusOr<Key> ReadKey(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("parameter key file ", path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "parameter key file %s has mode %04o, which lets group or others access it; "
        "run `chmod 600 %s`",
        path, st.st_mode & 07777, path));
  }
  if (st.st_size != static_cast<off_t>(ParameterStore::kKeyBytes)) {
    return absl::FailedPreconditionError(absl::StrCat("parameter key file ", path, " holds ",
                                                      st.st_size, " bytes; a key is exactly ",
                                                      ParameterStore::kKeyBytes, " bytes"));
  }
  Key key;
  size_t done = 0;
  while (done < key.size()) {
    ssize_t n = ::read(fd, key.data() + done, key.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));
    if (n == 0)
      return absl::FailedPreconditionError(
          absl::StrCat("parameter key file ", path, " is truncated"));
    done += static_cast<size_t>(n);
  }
  return key;
}

// Creates `path` with a fresh random key. NotFound-style errno statuses on failure; AlreadyExists
// if another process created it first.
absl::StatusOr<Key> CreateKey(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("create ", path));
  FdCloser closer(fd);
  Key key;
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    ::unlink(path.c_str());
    return absl::InternalError("RAND_bytes failed");
  }
  size_t done = 0;
  while (done < key.size()) {
    ssize_t n = ::write(fd, key.data() + done, key.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = absl::ErrnoToStatus(errno, absl::StrCat("write ", path));
      ::unlink(path.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status s = absl::ErrnoToStatus(errno, absl::StrCat("fsync ", path));
    ::unlink(path.c_str());
    return s;
  }
  KILN_LOG(INFO) << "created parameter key file " << path;
  return key;
}

absl::StatusOr<Key> LoadOrCreateKey(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      FdCloser closer(fd);
      return ReadKey(fd, path);
    }
    if (errno != ENOENT) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
    absl::StatusOr<Key> created = CreateKey(path);
    if (!absl::IsAlreadyExists(created.status())) return created;
    // Lost a creation race: read the winner's key.
  }
  return absl::InternalError(absl::StrCat("cannot open or create ", path));
}

struct EvpCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using EvpCtx = std::unique_ptr<EVP_CIPHER_CTX, EvpCtxDeleter>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* Bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

struct Sealed {
  std::string nonce;
  std::string ciphertext;
  std::string tag;
};

// AES-256-GCM encryption of `plaintext` with a fresh random nonce, authenticating `aad` too.
absl::StatusOr<Sealed> Seal(const Key& key, std::string_view plaintext, std::string_view aad) {
  Sealed out;
  out.nonce.resize(kNonceBytes);
  out.ciphertext.resize(plaintext.size());
  out.tag.resize(kTagBytes);
  if (RAND_bytes(Bytes(out.nonce), kNonceBytes) != 1)
    return absl::InternalError("RAND_bytes failed");
  EvpCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), Bytes(out.nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), Bytes(out.ciphertext), &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), Bytes(out.ciphertext) + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, Bytes(out.tag)) != 1) {
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  return out;
}

// Decrypts and authenticates; DataLoss if authentication fails.
absl::StatusOr<std::string> Unseal(const Key& key, const Sealed& sealed, std::string_view aad) {
  std::string plaintext(sealed.ciphertext.size(), '\0');
  std::string tag = sealed.tag;
  EvpCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), Bytes(sealed.nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), Bytes(plaintext), &len, Bytes(sealed.ciphertext),
                        static_cast<int>(sealed.ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, Bytes(tag)) != 1) {
    return absl::InternalError("AES-256-GCM decryption setup failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), Bytes(plaintext) + len, &final_len) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return absl::DataLossError(absl::StrCat(
        "secure parameter ", absl::string_view(aad.data(), aad.size()),
        " does not decrypt: the record was altered, copied from another name, or encrypted under "
        "another key"));
  }
  return plaintext;
}

// A decoded `param/<name>` record.
struct Record {
  Parameter::Type type = Parameter::STRING;
  int64_t version = 0;
  std::string value;  // STRING only
  Sealed sealed;      // SECURE_STRING only
};

absl::StatusOr<std::string> EncodeRecord(const Record& r) {
  nlohmann::json j;
  j["type"] = Parameter::Type_Name(r.type);
  j["version"] = r.version;
  if (r.type == Parameter::SECURE_STRING) {
    j["nonce"] = absl::Base64Escape(r.sealed.nonce);
    j["ciphertext"] = absl::Base64Escape(r.sealed.ciphertext);
    j["tag"] = absl::Base64Escape(r.sealed.tag);
  } else {
    j["value"] = r.value;
  }
  try {
    return j.dump();
  } catch (const nlohmann::json::exception&) {  // invalid UTF-8 in a STRING value
    return absl::InvalidArgumentError("parameter value is not valid UTF-8");
  }
}

absl::StatusOr<Record> DecodeRecord(std::string_view name, const std::string& data) {
  auto corrupt = [&](std::string_view why) {
    return absl::DataLossError(
        absl::StrCat("parameter record ", absl::string_view(name.data(), name.size()),
                     " is corrupt: ", absl::string_view(why.data(), why.size())));
  };
  Record r;
  try {
    nlohmann::json j = nlohmann::json::parse(data);
    if (!Parameter::Type_Parse(j.at("type").get<std::string>(), &r.type))
      return corrupt("bad type");
    r.version = j.at("version").get<int64_t>();
    if (r.type == Parameter::SECURE_STRING) {
      if (!absl::Base64Unescape(j.at("nonce").get<std::string>(), &r.sealed.nonce) ||
          !absl::Base64Unescape(j.at("ciphertext").get<std::string>(), &r.sealed.ciphertext) ||
          !absl::Base64Unescape(j.at("tag").get<std::string>(), &r.sealed.tag)) {
        return corrupt("bad base64");
      }
      if (r.sealed.nonce.size() != kNonceBytes || r.sealed.tag.size() != kTagBytes) {
        return corrupt("bad nonce or tag length");
      }
    } else {
      r.value = j.at("value").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    return corrupt(e.what());
  }
  return r;
}

Parameter ToParameter(std::string_view name, const Record& r) {
  Parameter p;
  p.set_name(std::string(name));
  p.set_type(r.type);
  p.set_version(r.version);
  if (r.type == Parameter::STRING) p.set_value(r.value);
  return p;
}

}  // namespace

bool ParameterStore::IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (name[0] != '/' && !absl::ascii_isalpha(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '/' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<ParameterStore>> ParameterStore::Create(
    Store* store, const std::string& key_file_path) {
  KILN_ASSIGN_OR_RETURN(Key key, LoadOrCreateKey(key_file_path));
  auto params = std::unique_ptr<ParameterStore>(new ParameterStore(store, key));
  OPENSSL_cleanse(key.data(), key.size());
  return params;
}

ParameterStore::ParameterStore(Store* store, const Key& key) : store_(store), key_(key) {}

ParameterStore::~ParameterStore() { OPENSSL_cleanse(key_.data(), key_.size()); }

absl::StatusOr<int64_t> ParameterStore::Put(const std::string& name, const std::string& value,
                                            Parameter::Type type, bool overwrite) {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid parameter name \"", name.substr(0, 64),
        "\": it must start with '/' or a letter, use only [A-Za-z0-9_./-] and have at most ",
        kMaxNameLength, " characters"));
  }
  if (value.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("value of parameter ", name, " has ",
                                                   value.size(), " bytes; the limit is ",
                                                   kMaxValueBytes));
  }
  if (type != Parameter::STRING && type != Parameter::SECURE_STRING) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown parameter type ", static_cast<int>(type)));
  }
  absl::MutexLock lock(&put_mu_);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> old, store_->Get(StoreKey(name)));
  Record r;
  r.type = type;
  r.version = 1;
  if (old.has_value()) {
    if (!overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat("parameter ", name, " exists; set overwrite to replace it"));
    }
    KILN_ASSIGN_OR_RETURN(Record previous, DecodeRecord(name, *old));
    r.version = previous.version + 1;
  }
  if (type == Parameter::SECURE_STRING) {
    KILN_ASSIGN_OR_RETURN(r.sealed, Seal(key_, value, name));
  } else {
    r.value = value;
  }
  KILN_ASSIGN_OR_RETURN(std::string encoded, EncodeRecord(r));
  WriteBatch batch;
  batch.Put(StoreKey(name), encoded);
  KILN_RETURN_IF_ERROR(store_->Write(batch));
  return r.version;
}

absl::StatusOr<std::vector<Parameter>> ParameterStore::List() {
  KILN_ASSIGN_OR_RETURN(auto rows, store_->Scan(kKeyPrefix));
  std::vector<Parameter> out;
  out.reserve(rows.size());
  for (const auto& [key, data] : rows) {
    std::string_view name = std::string_view(key).substr(kKeyPrefix.size());
    KILN_ASSIGN_OR_RETURN(Record r, DecodeRecord(name, data));
    out.push_back(ToParameter(name, r));
  }
  return out;
}

absl::StatusOr<Parameter> ParameterStore::Get(const std::string& name) {
  if (!IsValidName(name))
    return absl::InvalidArgumentError(
        absl::StrCat("invalid parameter name \"", name.substr(0, 64), "\""));
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> data, store_->Get(StoreKey(name)));
  if (!data.has_value())
    return absl::NotFoundError(absl::StrCat("parameter does not exist: ", name));
  KILN_ASSIGN_OR_RETURN(Record r, DecodeRecord(name, *data));
  Parameter p = ToParameter(name, r);
  if (r.type == Parameter::SECURE_STRING) {
    KILN_ASSIGN_OR_RETURN(*p.mutable_value(), Unseal(key_, r.sealed, name));
  }
  return p;
}

absl::StatusOr<ParameterStore::Resolved> ParameterStore::Resolve(
    const std::vector<std::string>& names) {
  Resolved out;
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (!seen.insert(name).second) continue;
    absl::StatusOr<Parameter> p = Get(name);
    if (absl::IsNotFound(p.status()) || absl::IsInvalidArgument(p.status())) {
      out.missing.push_back(name);
      continue;
    }
    if (!p.ok()) return p.status();
    kiln::v1::ResolvedParameter& r = out.parameters.emplace_back();
    r.set_name(name);
    r.set_value(std::move(*p->mutable_value()));
    r.set_mask(true);
  }
  return out;
}

}  // namespace kiln::coordinator

#include "tests/testing/mem_store.h"

#include <cstdlib>

namespace kiln::test {

absl::StatusOr<std::optional<std::string>> MemStore::Get(std::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

absl::Status MemStore::Write(const coordinator::WriteBatch& batch) {
  absl::MutexLock lock(&mu_);
  for (const coordinator::WriteBatch::Op& op : batch.ops()) {
    if (op.is_delete) {
      data_.erase(op.key);
    } else {
      data_[op.key] = op.value;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MemStore::Scan(
    std::string_view prefix, size_t limit, bool reverse) {
  absl::MutexLock lock(&mu_);
  const std::optional<std::string> end = coordinator::PrefixSuccessor(prefix);
  auto first = data_.lower_bound(prefix);
  auto last = end.has_value() ? data_.lower_bound(*end) : data_.end();
  std::vector<std::pair<std::string, std::string>> out;
  auto take = [&](const auto& kv) {
    if (limit != 0 && out.size() >= limit) return false;
    out.emplace_back(kv.first, kv.second);
    return true;
  };
  if (reverse) {
    for (auto it = std::make_reverse_iterator(last); it != std::make_reverse_iterator(first);
         ++it) {
      if (!take(*it)) break;
    }
  } else {
    for (auto it = first; it != last; ++it) {
      if (!take(*it)) break;
    }
  }
  return out;
}

std::map<std::string, std::string> MemStore::Contents() const {
  absl::MutexLock lock(&mu_);
  return std::map<std::string, std::string>(data_.begin(), data_.end());
}

void FaultInjectingStore::FailWritesAfter(int n, absl::Status error) {
  if (n < 0 || error.ok()) std::abort();  // a broken test
  absl::MutexLock lock(&mu_);
  writes_left_ = n;
  pending_error_ = std::move(error);
}

int FaultInjectingStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

absl::StatusOr<std::optional<std::string>> FaultInjectingStore::Get(std::string_view key) {
  {
    absl::MutexLock lock(&mu_);
    if (!sticky_error_.ok()) return sticky_error_;
  }
  return base_->Get(key);
}

absl::Status FaultInjectingStore::Write(const coordinator::WriteBatch& batch) {
  {
    absl::MutexLock lock(&mu_);
    if (!sticky_error_.ok()) return sticky_error_;
    if (writes_left_.has_value() && (*writes_left_)-- == 0) {
      sticky_error_ = pending_error_;
      return sticky_error_;
    }
    ++writes_;
  }
  return base_->Write(batch);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> FaultInjectingStore::Scan(
    std::string_view prefix, size_t limit, bool reverse) {
  {
    absl::MutexLock lock(&mu_);
    if (!sticky_error_.ok()) return sticky_error_;
  }
  return base_->Scan(prefix, limit, reverse);
}

}  // namespace kiln::test

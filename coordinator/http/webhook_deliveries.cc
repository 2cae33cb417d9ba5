#include "coordinator/http/webhook_deliveries.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace kiln::coordinator {
namespace {

constexpr char kRecordPrefix[] = "webhook-delivery/";
constexpr char kProjectsPrefix[] = "webhook-delivery-projects/";
constexpr char kIdPrefix[] = "webhook-delivery-id/";
constexpr size_t kRecordPrefixSize = sizeof(kRecordPrefix) - 1;
constexpr size_t kProjectsPrefixSize = sizeof(kProjectsPrefix) - 1;

std::string Pad(int64_t n) { return absl::StrFormat("%020d", n); }
std::string RecordKey(int64_t n) { return absl::StrCat(kRecordPrefix, Pad(n)); }
std::string ProjectsKey(int64_t n) { return absl::StrCat(kProjectsPrefix, Pad(n)); }
std::string IdKey(const std::string& delivery_id) { return absl::StrCat(kIdPrefix, delivery_id); }

absl::StatusOr<int64_t> NumberOf(const std::string& key) {
  int64_t n = 0;
  if (key.size() <= kRecordPrefixSize ||
      !absl::SimpleAtoi(absl::string_view(key).substr(kRecordPrefixSize), &n)) {
    return absl::DataLossError(absl::StrCat("malformed webhook delivery key ", key));
  }
  return n;
}

absl::StatusOr<kiln::v1::WebhookDelivery> ParseRecord(const std::string& key,
                                                      const std::string& value) {
  kiln::v1::WebhookDelivery d;
  if (!d.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("corrupt webhook delivery record ", key));
  }
  return d;
}

}  // namespace

absl::StatusOr<std::unique_ptr<WebhookDeliveryLog>> WebhookDeliveryLog::Open(Store* store,
                                                                            size_t max_deliveries) {
  std::unique_ptr<WebhookDeliveryLog> log(new WebhookDeliveryLog(store, std::max<size_t>(1, max_deliveries)));
  KILN_ASSIGN_OR_RETURN(auto records, store->Scan(kRecordPrefix));
  absl::MutexLock lock(&log->mu_);
  log->count_ = records.size();
  if (!records.empty()) {
    KILN_ASSIGN_OR_RETURN(int64_t newest, NumberOf(records.back().first));
    log->next_number_ = newest + 1;
  }
  return log;
}

int64_t WebhookDeliveryLog::Allocate() {
  absl::MutexLock lock(&mu_);
  return next_number_++;
}

absl::Status WebhookDeliveryLog::Record(const kiln::v1::WebhookDelivery& delivery,
                                        const RecordOptions& options) {
  absl::MutexLock lock(&mu_);
  int64_t n = options.number;
  if (n <= 0) n = next_number_++;
  next_number_ = std::max(next_number_, n + 1);

  // Deletions first: a pruned record may carry the same delivery id as the new one.
  WriteBatch batch;
  const size_t excess = count_ + 1 > max_deliveries_ ? count_ + 1 - max_deliveries_ : 0;
  size_t pruned = 0;
  if (excess > 0) {
    KILN_ASSIGN_OR_RETURN(auto oldest, store_->Scan(kRecordPrefix, excess));
    for (const auto& [key, value] : oldest) {
      KILN_ASSIGN_OR_RETURN(int64_t old_n, NumberOf(key));
      batch.Delete(key);
      batch.Delete(ProjectsKey(old_n));
      kiln::v1::WebhookDelivery old;
      if (old.ParseFromString(value) && !old.delivery_id().empty()) {
        KILN_ASSIGN_OR_RETURN(std::optional<std::string> indexed, store_->Get(IdKey(old.delivery_id())));
        if (indexed.has_value() && *indexed == absl::StrCat(old_n)) batch.Delete(IdKey(old.delivery_id()));
      }
      ++pruned;
    }
  }
  batch.Put(RecordKey(n), delivery.SerializeAsString());
  if (!options.evaluated_projects.empty()) {
    batch.Put(ProjectsKey(n), absl::StrJoin(options.evaluated_projects, "\n"));
  }
  if (options.index_delivery_id && !delivery.delivery_id().empty()) {
    batch.Put(IdKey(delivery.delivery_id()), absl::StrCat(n));
  }
  if (options.extra != nullptr) {
    for (const WriteBatch::Op& op : options.extra->ops()) {
      if (op.is_delete) {
        batch.Delete(op.key);
      } else {
        batch.Put(op.key, op.value);
      }
    }
  }
  KILN_RETURN_IF_ERROR(store_->Write(batch));
  count_ = count_ + 1 - pruned;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<kiln::v1::WebhookDelivery>> WebhookDeliveryLog::Find(
    const std::string& delivery_id) {
  if (delivery_id.empty()) return std::nullopt;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> indexed, store_->Get(IdKey(delivery_id)));
  int64_t n = 0;
  if (!indexed.has_value()) return std::nullopt;
  if (!absl::SimpleAtoi(*indexed, &n)) {
    return absl::DataLossError(absl::StrCat("malformed index entry for delivery ", delivery_id));
  }
  const std::string key = RecordKey(n);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> value, store_->Get(key));
  if (!value.has_value()) return std::nullopt;
  KILN_ASSIGN_OR_RETURN(kiln::v1::WebhookDelivery d, ParseRecord(key, *value));
  return d;
}

absl::StatusOr<std::vector<kiln::v1::WebhookDelivery>> WebhookDeliveryLog::List(
    const std::string& project, size_t limit) {
  std::vector<kiln::v1::WebhookDelivery> out;
  if (project.empty()) {
    KILN_ASSIGN_OR_RETURN(auto records, store_->Scan(kRecordPrefix, limit, /*reverse=*/true));
    for (const auto& [key, value] : records) {
      KILN_ASSIGN_OR_RETURN(kiln::v1::WebhookDelivery d, ParseRecord(key, value));
      out.push_back(std::move(d));
    }
    return out;
  }
  // The project lists are short; the window is bounded (max_deliveries), so this scan is too.
  KILN_ASSIGN_OR_RETURN(auto lists, store_->Scan(kProjectsPrefix, 0, /*reverse=*/true));
  for (const auto& [key, names] : lists) {
    if (out.size() >= limit) break;
    bool evaluated = false;
    for (absl::string_view name : absl::StrSplit(names, '\n')) evaluated |= name == project;
    if (!evaluated) continue;
    const std::string record_key = absl::StrCat(kRecordPrefix, key.substr(kProjectsPrefixSize));
    KILN_ASSIGN_OR_RETURN(std::optional<std::string> value, store_->Get(record_key));
    if (!value.has_value()) continue;
    KILN_ASSIGN_OR_RETURN(kiln::v1::WebhookDelivery d, ParseRecord(record_key, *value));
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace kiln::coordinator

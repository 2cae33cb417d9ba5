// WebhookDeliveryLog: the durable record of webhook deliveries and source polls (kiln.v1.WebhookDelivery)
// in the coordinator's Store, newest first, keeping the last `max_deliveries`. It also answers
// "was this X-GitHub-Delivery handled before, and which builds did it start?" so that redelivery
// de-duplication survives a coordinator restart.
//
// Keys (coordinator/store/store.h):
//   webhook-delivery/<n:020>           kiln.v1.WebhookDelivery; n increases with every record
//   webhook-delivery-projects/<n:020>  the projects delivery n was evaluated against, '\n'-separated
//                                      (absent when none)
//   webhook-delivery-id/<delivery id>  decimal n of the newest *indexed* record with that delivery id
// A record and its index entries, and the deletion of the records that fall out of the window, are
// one atomic batch.
//
// Thread-safety: thread-safe. Record() calls are serialised by an internal mutex.
#ifndef KILN_COORDINATOR_HTTP_WEBHOOK_DELIVERIES_H_
#define KILN_COORDINATOR_HTTP_WEBHOOK_DELIVERIES_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::coordinator {

class WebhookDeliveryLog {
 public:
  static constexpr size_t kDefaultMaxDeliveries = 10000;

  // Reads the window's bounds from `store` (borrowed; must outlive the log). `max_deliveries` >= 1;
  // older records beyond it are deleted by the next Record(). Errors: the store's; DataLoss for a
  // malformed key.
  static absl::StatusOr<std::unique_ptr<WebhookDeliveryLog>> Open(
      Store* store, size_t max_deliveries = kDefaultMaxDeliveries);
  WebhookDeliveryLog(const WebhookDeliveryLog&) = delete;
  WebhookDeliveryLog& operator=(const WebhookDeliveryLog&) = delete;

  // Reserves the next record number, for a record whose id must be known before it is written (a
  // poll's "poll-<n>"). Numbers increase and are not handed out twice by this object.
  int64_t Allocate();

  struct RecordOptions {
    // The projects the delivery was evaluated against (matched or not); ListDeliveries(project)
    // finds it under each of them.
    std::vector<std::string> evaluated_projects;
    // Make Find(delivery.delivery_id()) return this record. Set it only for authenticated deliveries
    // (an unauthenticated request must not be able to shadow a real delivery's builds).
    bool index_delivery_id = false;
    // A number from Allocate(); 0 = allocate one now.
    int64_t number = 0;
    // More writes to commit atomically with the record (e.g. a poll's last-seen commit). Borrowed.
    const WriteBatch* extra = nullptr;
  };
  // Stores `delivery` and deletes the oldest records beyond max_deliveries. Errors: the store's (then
  // nothing of the batch was written).
  absl::Status Record(const kiln::v1::WebhookDelivery& delivery, const RecordOptions& options);

  // The newest indexed record of `delivery_id`, or nullopt. Errors: the store's; DataLoss (corrupt
  // record).
  absl::StatusOr<std::optional<kiln::v1::WebhookDelivery>> Find(const std::string& delivery_id);

  // Up to `limit` (>= 1) records, newest first; `project` non-empty: only those evaluated against it.
  // Errors: the store's; DataLoss (corrupt record).
  absl::StatusOr<std::vector<kiln::v1::WebhookDelivery>> List(const std::string& project,
                                                              size_t limit);

 private:
  WebhookDeliveryLog(Store* store, size_t max_deliveries)
      : store_(store), max_deliveries_(max_deliveries) {}

  Store* const store_;
  const size_t max_deliveries_;
  absl::Mutex mu_;
  int64_t next_number_ ABSL_GUARDED_BY(mu_) = 1;
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;  // records stored
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_HTTP_WEBHOOK_DELIVERIES_H_

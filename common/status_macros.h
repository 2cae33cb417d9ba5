// Status propagation macros with the semantics of abseil HEAD's ABSL_RETURN_IF_ERROR /
// ABSL_ASSIGN_OR_RETURN (absent from Debian 12's absl 20220623). Thread-safe: they are expressions.
#ifndef KILN_COMMON_STATUS_MACROS_H_
#define KILN_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if it is not OK.
#define KILN_RETURN_IF_ERROR(expr)                     \
  do {                                                 \
    ::absl::Status kiln_status_ = (expr);              \
    if (!kiln_status_.ok()) return kiln_status_;       \
  } while (0)

#define KILN_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define KILN_STATUS_MACROS_CONCAT_(x, y) KILN_STATUS_MACROS_CONCAT_INNER_(x, y)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status if it is not OK.
//   KILN_ASSIGN_OR_RETURN(auto db, OpenDb(path));
#define KILN_ASSIGN_OR_RETURN(lhs, rexpr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_STATUS_MACROS_CONCAT_(kiln_statusor_, __LINE__), lhs, rexpr)

#define KILN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KILN_COMMON_STATUS_MACROS_H_

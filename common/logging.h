// Logging facade: severity stream macros over an injectable sink (laminar log.h style).
//   KILN_LOG(INFO) << "agent " << id << " connected";
// Lines carry the file basename and line. The default sink writes to stderr. Thread-safe.
// Never log secret values: callers pass masked text.
#ifndef KILN_COMMON_LOGGING_H_
#define KILN_COMMON_LOGGING_H_

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace kiln::common {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Receives one formatted line (no trailing newline).
using LogSink = std::function<void(LogSeverity, std::string_view line)>;

// Replaces the process-wide sink; nullptr restores the stderr sink. Call before starting threads.
void SetLogSink(LogSink sink);
// Lines below `min` are dropped. Default kInfo.
void SetMinLogSeverity(LogSeverity min);
bool LogEnabled(LogSeverity s);

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace kiln::common

#define KILN_LOG_SEVERITY_DEBUG ::kiln::common::LogSeverity::kDebug
#define KILN_LOG_SEVERITY_INFO ::kiln::common::LogSeverity::kInfo
#define KILN_LOG_SEVERITY_WARNING ::kiln::common::LogSeverity::kWarning
#define KILN_LOG_SEVERITY_ERROR ::kiln::common::LogSeverity::kError

#define KILN_LOG(sev)                                         \
  if (!::kiln::common::LogEnabled(KILN_LOG_SEVERITY_##sev)) { \
  } else                                                      \
    ::kiln::common::LogMessage(KILN_LOG_SEVERITY_##sev, __FILE__, __LINE__).stream()

#endif  // KILN_COMMON_LOGGING_H_

#include "common/logging.h"

#include <atomic>
#include <cstdio>
#include <cstring>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiln::common {
namespace {

absl::Mutex sink_mu;
LogSink* sink ABSL_GUARDED_BY(sink_mu) = nullptr;
std::atomic<int> min_severity{static_cast<int>(LogSeverity::kInfo)};

const char* SeverityName(LogSeverity s) {
  switch (s) {
    case LogSeverity::kDebug: return "D";
    case LogSeverity::kInfo: return "I";
    case LogSeverity::kWarning: return "W";
    case LogSeverity::kError: return "E";
  }
  return "?";
}

}  // namespace

void SetLogSink(LogSink s) {
  absl::MutexLock l(&sink_mu);
  delete sink;
  sink = s ? new LogSink(std::move(s)) : nullptr;
}

void SetMinLogSeverity(LogSeverity min) { min_severity = static_cast<int>(min); }

bool LogEnabled(LogSeverity s) { return static_cast<int>(s) >= min_severity.load(); }

LogMessage::LogMessage(LogSeverity severity, const char* file, int line) : severity_(severity) {
  const char* base = std::strrchr(file, '/');
  stream_ << SeverityName(severity) << " "
          << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()) << " "
          << (base ? base + 1 : file) << ":" << line << "] ";
}

LogMessage::~LogMessage() {
  std::string line = stream_.str();
  absl::MutexLock l(&sink_mu);
  if (sink != nullptr) {
    (*sink)(severity_, line);
  } else {
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

}  // namespace kiln::common

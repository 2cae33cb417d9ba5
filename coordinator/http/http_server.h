// The coordinator's plain-HTTP listener (cpp-httplib): GitHub webhook deliveries, health and metrics.
//   POST /webhooks/github  -> Handlers::github_webhook (JSON answer; 413 when the body is too large)
//   GET  /healthz          -> 200 "ok" when Handlers::healthy() (or when it is unset), else 503
//   GET  /metrics          -> 200 Handlers::metrics(), Prometheus text format 0.0.4
// Any other path answers 404. Handlers run on the server's worker threads, concurrently; they must be
// thread-safe. An exception thrown by a handler becomes a 500 and never escapes.
//
// Thread-safety: port() and Stop() may be called from any thread; Stop() must not be called from a
// handler.
#ifndef KILN_COORDINATOR_HTTP_HTTP_SERVER_H_
#define KILN_COORDINATOR_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/http/webhook.h"

namespace kiln::coordinator {

class HttpServer {
 public:
  struct Options {
    // "host:port" ("[v6]:port" for IPv6). Only this address is bound. Port 0 picks a free port.
    std::string listen = "127.0.0.1:7080";
    // Larger request bodies are answered 413 without calling a handler. GitHub caps deliveries at
    // 25 MiB.
    size_t max_body_bytes = 25 << 20;
  };
  struct Handlers {
    // Unset: POST /webhooks/github answers 404.
    std::function<HttpResult(const std::map<std::string, std::string>& lowercase_headers,
                             std::string_view body)>
        github_webhook;
    // Prometheus text exposition. Unset: an empty body.
    std::function<std::string()> metrics;
    // Unset: always healthy.
    std::function<bool()> healthy;
  };

  // Binds `options.listen` and serves on a background thread; returns once the socket is listening
  // (connections made after it returns are accepted).
  // Errors: INVALID_ARGUMENT (malformed listen address), UNAVAILABLE (the address cannot be bound:
  // in use, not local, ...). Both name the address.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options, Handlers handlers);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Stops the server (see Stop).
  ~HttpServer();

  // The bound port (the chosen one when options.listen had port 0).
  int port() const { return port_; }

  // Closes the listening socket, lets in-flight requests finish, and joins the serving thread.
  // Idempotent.
  void Stop();

 private:
  class Server;
  HttpServer(std::unique_ptr<Server> server, int port);

  std::unique_ptr<Server> server_;
  const int port_;
  absl::Mutex stop_mu_;
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_HTTP_HTTP_SERVER_H_

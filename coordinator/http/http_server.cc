#include "coordinator/http/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiln::coordinator {

// httplib::Server with a stop that cannot be lost: httplib's own stop() does nothing until the accept
// loop has set is_running_, so a Stop() right after Start() would leave the loop running forever. The
// loop runs `while (svr_sock_ != INVALID_SOCKET)`, so swapping the socket out first always ends it.
class HttpServer::Server : public httplib::Server {
 public:
  void CloseListener() {
    socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock == INVALID_SOCKET) return;
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
};

namespace {

constexpr char kJson[] = "application/json";

// SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second process bind
// the same port silently.
void SocketOptions(socket_t sock) {
  int yes = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
}

absl::Status SplitHostPort(const std::string& listen, std::string* host, int* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" is not host:port"));
  }
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  std::string port_text = listen.substr(colon + 1);
  if (host->empty() || port_text.empty() ||
      !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port_text, port) || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" is not host:port with a port 0..65535"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                              Handlers handlers) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(options.listen, &host, &port); !s.ok()) return s;

  auto server = std::make_unique<Server>();
  server->set_socket_options(SocketOptions);
  server->set_payload_max_length(options.max_body_bytes);
  server->set_keep_alive_timeout(2);  // bounds how long Stop() waits for idle keep-alive connections
  server->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(R"({"message":"internal error"})", kJson);
  });

  auto h = std::make_shared<const Handlers>(std::move(handlers));
  const size_t max_body = options.max_body_bytes;
  // A content reader: the body is streamed here with the size limit applied to every encoding
  // (set_payload_max_length alone does not bound chunked bodies in this httplib).
  server->Post("/webhooks/github", [h, max_body](const httplib::Request& req, httplib::Response& res,
                                                 const httplib::ContentReader& content_reader) {
    if (!h->github_webhook) {
      res.status = 404;
      return;
    }
    std::string body;
    bool too_large = false;
    const bool read = content_reader([&](const char* data, size_t n) {
      if (body.size() + n > max_body) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    // httplib refuses a Content-Length over the limit itself (the reader then returns false without
    // calling us); chunked bodies are cut off by the receiver above.
    uint64_t declared = 0;
    const bool has_length = absl::SimpleAtoi(req.get_header_value("Content-Length"), &declared);
    if (too_large || (!read && has_length && declared > max_body)) {
      res.status = 413;
      res.set_content(R"({"message":"request body too large"})", kJson);
      return;
    }
    if (!read) {
      res.status = 400;
      res.set_content(R"({"message":"could not read the request body"})", kJson);
      return;
    }
    std::map<std::string, std::string> headers;
    for (const auto& [name, value] : req.headers) headers.emplace(absl::AsciiStrToLower(name), value);
    HttpResult result;
    try {
      result = h->github_webhook(headers, body);
    } catch (...) {
      KILN_LOG(ERROR) << "http: the webhook handler threw";
      result = {500, R"({"message":"internal error"})"};
    }
    res.status = result.status;
    res.set_content(result.body, kJson);
  });
  server->Get("/healthz", [h](const httplib::Request&, httplib::Response& res) {
    bool healthy = true;
    try {
      healthy = !h->healthy || h->healthy();
    } catch (...) {
      healthy = false;
    }
    res.status = healthy ? 200 : 503;
    res.set_content(healthy ? "ok" : "unhealthy", "text/plain");
  });
  server->Get("/metrics", [h](const httplib::Request&, httplib::Response& res) {
    std::string text;
    try {
      if (h->metrics) text = h->metrics();
    } catch (...) {
      res.status = 500;
      res.set_content("metrics unavailable", "text/plain");
      return;
    }
    res.status = 200;
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });

  // bind_to_port also listen()s, so connections made once Start returns wait in the backlog.
  int bound = port;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " (address in use or not local?)"));
  }
  auto self = std::unique_ptr<HttpServer>(new HttpServer(std::move(server), bound));
  absl::MutexLock lock(&self->stop_mu_);
  Server* raw = self->server_.get();
  self->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return self;
}

HttpServer::HttpServer(std::unique_ptr<Server> server, int port)
    : server_(std::move(server)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  absl::MutexLock lock(&stop_mu_);
  server_->CloseListener();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kiln::coordinator

#include "coordinator/http/http_server.h"

#include <httplib.h>

#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::coordinator {
namespace {

using ::testing::HasSubstr;

// Records what the webhook handler saw.
struct Seen {
  absl::Mutex mu;
  int calls ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, std::string> headers ABSL_GUARDED_BY(mu);
  std::string body ABSL_GUARDED_BY(mu);
};

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(size_t max_body_bytes = 25 << 20) {
    HttpServer::Options options;
    options.listen = "127.0.0.1:0";
    options.max_body_bytes = max_body_bytes;
    HttpServer::Handlers handlers;
    handlers.github_webhook = [this](const std::map<std::string, std::string>& headers,
                                     std::string_view body) {
      if (body == "throw") throw std::runtime_error("handler bug");
      absl::MutexLock lock(&seen_.mu);
      ++seen_.calls;
      seen_.headers = headers;
      seen_.body = std::string(body);
      return HttpResult{202, R"({"message":"seen"})"};
    };
    handlers.metrics = [] { return std::string("kiln_builds_total 3\n"); };
    handlers.healthy = [this] { return healthy_.load(); };
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, handlers);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  int Calls() {
    absl::MutexLock lock(&seen_.mu);
    return seen_.calls;
  }

  Seen seen_;
  std::atomic<bool> healthy_{true};
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, WebhookGetsLowercaseHeadersAndExactBody) {
  StartServer();
  const std::string body = "{\"a\": 1}\r\n\x01 trailing ";
  httplib::Headers headers = {{"X-GitHub-Event", "push"}, {"X-Hub-Signature-256", "sha256=ab"}};
  httplib::Result res = client_->Post("/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202);
  EXPECT_EQ(res->body, R"({"message":"seen"})");
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("application/json"));
  absl::MutexLock lock(&seen_.mu);
  EXPECT_EQ(seen_.body, body);
  EXPECT_EQ(seen_.headers["x-github-event"], "push");
  EXPECT_EQ(seen_.headers["x-hub-signature-256"], "sha256=ab");
  EXPECT_EQ(seen_.headers["content-type"], "application/json");
}

TEST_F(HttpServerTest, BodyOverLimitIs413AndNotHandled) {
  StartServer(/*max_body_bytes=*/16);
  httplib::Result ok = client_->Post("/webhooks/github", std::string(16, 'x'), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202);
  httplib::Result big = client_->Post("/webhooks/github", std::string(17, 'x'), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(Calls(), 1);
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitIsRefusedAndNotHandled) {
  StartServer(/*max_body_bytes=*/16);
  // No Content-Length: the body arrives with Transfer-Encoding: chunked.
  httplib::Result big = client_->Post(
      "/webhooks/github",
      [](size_t offset, httplib::DataSink& sink) {
        const std::string part(32, 'x');
        sink.write(part.data(), part.size());
        sink.write(part.data(), part.size());
        sink.done();
        return true;
      },
      "application/json");
  if (big) {
    EXPECT_EQ(big->status, 413);
  }
  EXPECT_EQ(Calls(), 0);
}

TEST_F(HttpServerTest, HealthzFollowsHealthyHandler) {
  StartServer();
  httplib::Result res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
  healthy_ = false;
  res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
}

TEST_F(HttpServerTest, MetricsServesPrometheusText) {
  StartServer();
  httplib::Result res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "kiln_builds_total 3\n");
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain; version=0.0.4"));
}

TEST_F(HttpServerTest, UnknownRouteAndWrongMethodAre404) {
  StartServer();
  httplib::Result res = client_->Get("/webhooks/github");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client_->Get("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(Calls(), 0);
}

TEST_F(HttpServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  StartServer();
  httplib::Result res = client_->Post("/webhooks/github", "throw", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, StopRefusesNewConnections) {
  StartServer();
  int port = server_->port();
  server_->Stop();
  server_->Stop();  // idempotent
  httplib::Client fresh("127.0.0.1", port);
  fresh.set_connection_timeout(2);
  EXPECT_FALSE(fresh.Get("/healthz"));
}

TEST(HttpServer, UnsetHandlersHaveDefaults) {
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, {});
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  httplib::Result res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client.Post("/webhooks/github", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST(HttpServer, BusyPortIsUnavailableAndNamesTheAddress) {
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> first = HttpServer::Start(options, {});
  ASSERT_TRUE(first.ok()) << first.status();
  options.listen = "127.0.0.1:" + std::to_string((*first)->port());
  absl::StatusOr<std::unique_ptr<HttpServer>> second = HttpServer::Start(options, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(options.listen));
}

TEST(HttpServer, MalformedListenAddressIsInvalidArgument) {
  for (const char* listen : {"127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"}) {
    HttpServer::Options options;
    options.listen = listen;
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, {});
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(listen));
  }
}

TEST(HttpServer, StopRightAfterStartDoesNotHang) {
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, {});
    ASSERT_TRUE(server.ok()) << server.status();
    (*server)->Stop();
  }
}

TEST(HttpServer, AcceptsConnectionsAsSoonAsStartReturns) {
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, {});
    ASSERT_TRUE(server.ok()) << server.status();
    httplib::Client client("127.0.0.1", (*server)->port());
    httplib::Result res = client.Get("/healthz");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
  }
}

}  // namespace
}  // namespace kiln::coordinator

// Real `git push` into a bare repository whose post-receive hook is tools/dev/git-webhook-hook, against
// an HttpServer + WebhookProcessor on 127.0.0.1:0. Needs bash, git, openssl and curl.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/http/http_server.h"
#include "coordinator/http/webhook.h"
#include "coordinator/http/webhook_deliveries.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/mem_store.h"

namespace kiln::coordinator {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::UnorderedElementsAre;

constexpr char kSecret[] = "hook-secret-\"$x";
constexpr char kZero[] = "0000000000000000000000000000000000000000";

struct Delivery {
  std::map<std::string, std::string> headers;
  std::string body;
};

class OneProjectBackend : public WebhookBackend {
 public:
  explicit OneProjectBackend(std::string location) {
    project_.set_name("app");
    project_.mutable_source()->set_type("git");
    project_.mutable_source()->set_location(std::move(location));
    project_.mutable_source()->set_branch("main");
    project_.set_webhook_secret_parameter("/app/webhook");
  }
  absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects() override {
    return std::vector<kiln::v1::Project>{project_};
  }
  absl::StatusOr<std::string> GetSecret(const std::string& name) override {
    if (name != "/app/webhook") return absl::NotFoundError(name);
    return std::string(kSecret);
  }
  absl::StatusOr<std::string> StartBuild(const kiln::v1::Project& project, const std::string& version,
                                         const kiln::v1::WebhookTrigger& trigger) override {
    absl::MutexLock lock(&mu_);
    versions_.push_back(version);
    return absl::StrCat("app:", versions_.size());
  }
  std::vector<std::string> versions() {
    absl::MutexLock lock(&mu_);
    return versions_;
  }

 private:
  kiln::v1::Project project_;
  absl::Mutex mu_;
  std::vector<std::string> versions_ ABSL_GUARDED_BY(mu_);
};

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

class GitWebhookHookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "/git-hook-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    bare_ = dir_ + "/srv/app.git";
    std::ofstream(dir_ + "/secret") << kSecret << "\n";

    backend_ = std::make_unique<OneProjectBackend>(bare_);
    delivery_log_ = *WebhookDeliveryLog::Open(&store_);
    processor_ = std::make_unique<WebhookProcessor>(backend_.get(), delivery_log_.get());
    HttpServer::Options options;
    options.listen = "127.0.0.1:0";
    HttpServer::Handlers handlers;
    handlers.github_webhook = [this](const std::map<std::string, std::string>& headers,
                                     std::string_view body) {
      {
        absl::MutexLock lock(&mu_);
        deliveries_.push_back({headers, std::string(body)});
      }
      return processor_->HandleGitHub(headers, body);
    };
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, handlers);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);

    RunResult init = Run(absl::StrCat(
        "git init -q --bare -b main \"$BARE\"\n"
        "cp '", KILN_GIT_WEBHOOK_HOOK, "' \"$BARE/hooks/post-receive\"\n"
        "chmod +x \"$BARE/hooks/post-receive\"\n"
        "git -C \"$BARE\" config kiln.webhookUrl http://127.0.0.1:", server_->port(),
        "/webhooks/github\n"
        "git -C \"$BARE\" config kiln.webhookSecretFile \"$T/secret\"\n"
        "git clone -q \"$BARE\" \"$T/work\" 2>/dev/null\n"));
    ASSERT_EQ(init.exit_code, 0) << init.output;
  }

  void TearDown() override {
    if (server_) server_->Stop();
    if (!dir_.empty()) Run("rm -rf \"$T\"");
  }

  // Runs `script` with bash -e in a hermetic git environment ($T = temp dir, $BARE = bare repo).
  RunResult Run(const std::string& script) {
    std::string path = dir_ + "/step.sh";
    std::ofstream(path) << "set -e\n"
                        << "export T='" << dir_ << "' BARE='" << bare_ << "'\n"
                        << "export HOME=\"$T\" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null\n"
                        << "export GIT_AUTHOR_NAME='Kiln Test' GIT_AUTHOR_EMAIL=test@kiln.invalid\n"
                        << "export GIT_COMMITTER_NAME='Kiln Test' GIT_COMMITTER_EMAIL=test@kiln.invalid\n"
                        << script;
    FILE* f = popen(("bash '" + path + "' 2>&1").c_str(), "r");
    if (f == nullptr) return {-1, "popen failed"};
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    int status = pclose(f);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  }

  std::string Sha(const std::string& rev) {
    RunResult r = Run("git -C \"$T/work\" rev-parse " + rev);
    return std::string(absl::StripTrailingAsciiWhitespace(r.output));
  }

  std::vector<Delivery> deliveries() {
    absl::MutexLock lock(&mu_);
    return deliveries_;
  }

  std::string dir_, bare_;
  std::unique_ptr<OneProjectBackend> backend_;
  test::MemStore store_;
  std::unique_ptr<WebhookDeliveryLog> delivery_log_;
  std::unique_ptr<WebhookProcessor> processor_;
  std::unique_ptr<HttpServer> server_;
  absl::Mutex mu_;
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
};

TEST_F(GitWebhookHookTest, PushSendsSignedDeliveryThatStartsABuild) {
  // First push creates main.
  RunResult push1 = Run(
      "cd \"$T/work\"\n"
      "echo a > a.txt; echo b > b.txt; mkdir dir; echo c > 'dir/c d.txt'\n"
      "git add -A\n"
      "printf 'First \"commit\"\\n\\nbody\\twith tab and \\\\ backslash\\n' > \"$T/msg\"\n"
      "git commit -q -F \"$T/msg\"\n"
      "git push origin HEAD:refs/heads/main\n");
  ASSERT_EQ(push1.exit_code, 0) << push1.output;
  EXPECT_THAT(push1.output, HasSubstr("kiln: refs/heads/main: HTTP 200"));
  const std::string sha1 = Sha("HEAD");

  std::vector<Delivery> got = deliveries();
  ASSERT_EQ(got.size(), 1u) << push1.output;
  const Delivery d1 = got[0];
  EXPECT_EQ(d1.headers.at("x-github-event"), "push");
  EXPECT_EQ(d1.headers.at("user-agent"), "Kiln-Git-Hook");
  EXPECT_THAT(d1.headers.at("x-github-delivery"), MatchesRegex("[0-9a-f-]{36}"));
  EXPECT_TRUE(VerifyGitHubSignature(d1.body, kSecret, d1.headers.at("x-hub-signature-256")));

  absl::StatusOr<GitHubDelivery> p1 = ParseGitHubDelivery(
      "push", d1.headers.at("x-github-delivery"), d1.headers.at("content-type"), d1.body);
  ASSERT_TRUE(p1.ok()) << p1.status() << "\n" << d1.body;
  EXPECT_EQ(p1->ref, "refs/heads/main");
  EXPECT_EQ(p1->before, kZero);
  EXPECT_EQ(p1->after, sha1);
  EXPECT_TRUE(p1->created);
  EXPECT_FALSE(p1->deleted);
  EXPECT_EQ(p1->head_commit_message, "First \"commit\"\n\nbody\twith tab and \\ backslash");
  EXPECT_THAT(p1->changed_files, UnorderedElementsAre("a.txt", "b.txt", "dir/c d.txt"));
  EXPECT_THAT(backend_->versions(), ElementsAre(sha1));

  // Second push: two commits that modify, remove and add (a name needing JSON escaping).
  RunResult push2 = Run(
      "cd \"$T/work\"\n"
      "echo a2 > a.txt; git rm -q b.txt; git commit -qam second\n"
      "echo q > 'q\"uote.txt'; git add -A; git commit -qm third\n"
      "git push origin HEAD:refs/heads/main\n");
  ASSERT_EQ(push2.exit_code, 0) << push2.output;
  const std::string sha3 = Sha("HEAD");
  got = deliveries();
  ASSERT_EQ(got.size(), 2u) << push2.output;
  const Delivery d2 = got[1];
  EXPECT_TRUE(VerifyGitHubSignature(d2.body, kSecret, d2.headers.at("x-hub-signature-256")));
  EXPECT_NE(d2.headers.at("x-github-delivery"), d1.headers.at("x-github-delivery"));
  absl::StatusOr<GitHubDelivery> p2 = ParseGitHubDelivery("push", "", "application/json", d2.body);
  ASSERT_TRUE(p2.ok()) << p2.status() << "\n" << d2.body;
  EXPECT_EQ(p2->before, sha1);
  EXPECT_EQ(p2->after, sha3);
  EXPECT_FALSE(p2->created);
  EXPECT_FALSE(p2->forced);
  EXPECT_EQ(p2->head_commit_message, "third");
  EXPECT_THAT(p2->changed_files, UnorderedElementsAre("a.txt", "b.txt", "q\"uote.txt"));
  json body = json::parse(d2.body);
  ASSERT_EQ(body["commits"].size(), 2u);
  EXPECT_EQ(body["commits"][0]["id"], Sha("HEAD~1"));
  EXPECT_EQ(body["commits"][0]["modified"], json({"a.txt"}));
  EXPECT_EQ(body["commits"][0]["removed"], json({"b.txt"}));
  EXPECT_EQ(body["commits"][1]["added"], json({"q\"uote.txt"}));
  char* real = realpath(bare_.c_str(), nullptr);
  ASSERT_NE(real, nullptr);
  EXPECT_EQ(body["repository"]["clone_url"], std::string(real));  // physical path (pwd -P)
  free(real);
  EXPECT_THAT(backend_->versions(), ElementsAre(sha1, sha3));
}

TEST_F(GitWebhookHookTest, ForcePushAndBranchDeletionAreFlagged) {
  RunResult r = Run(
      "cd \"$T/work\"\n"
      "echo a > a; git add a; git commit -qm one; git push -q origin HEAD:refs/heads/topic\n"
      "git commit -q --amend -m one-amended; git push -q -f origin HEAD:refs/heads/topic\n"
      "git push -q origin :refs/heads/topic\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<Delivery> got = deliveries();
  ASSERT_EQ(got.size(), 3u) << r.output;
  absl::StatusOr<GitHubDelivery> forced = ParseGitHubDelivery("push", "", "", got[1].body);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_TRUE(forced->forced);
  absl::StatusOr<GitHubDelivery> deleted = ParseGitHubDelivery("push", "", "", got[2].body);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(deleted->deleted);
  EXPECT_EQ(deleted->after, kZero);
  EXPECT_TRUE(json::parse(got[2].body)["head_commit"].is_null());
  // The project builds main only: nothing started.
  EXPECT_TRUE(backend_->versions().empty());
}

TEST_F(GitWebhookHookTest, WrongSecretIsReportedButPushSucceeds) {
  RunResult r = Run(
      "echo not-the-secret > \"$T/secret\"\n"
      "cd \"$T/work\"; echo a > a; git add a; git commit -qm one\n"
      "git push origin HEAD:refs/heads/main\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kiln: refs/heads/main: HTTP 401"));
  EXPECT_TRUE(backend_->versions().empty());
}

TEST_F(GitWebhookHookTest, UnconfiguredOrUnreachableHookDoesNotFailThePush) {
  RunResult r = Run(
      "git -C \"$BARE\" config --unset kiln.webhookUrl\n"
      "cd \"$T/work\"; echo a > a; git add a; git commit -qm one\n"
      "git push origin HEAD:refs/heads/main\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kiln: kiln.webhookUrl is not set"));

  server_->Stop();
  r = Run(
      "git -C \"$BARE\" config kiln.webhookUrl http://127.0.0.1:" + std::to_string(server_->port()) +
      "/webhooks/github\n"
      "cd \"$T/work\"; echo b > b; git add b; git commit -qm two\n"
      "git push origin HEAD:refs/heads/main\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kiln: error: delivery for refs/heads/main"));
  EXPECT_TRUE(deliveries().empty());
}

}  // namespace
}  // namespace kiln::coordinator

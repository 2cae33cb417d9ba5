#include "tests/integration/farm_fixture.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace kiln::test {

using kiln::v1::Build;

namespace {
std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}
}  // namespace

Farm::~Farm() {
  for (auto& a : agents_) {
    if (a) a->Stop();
  }
  StopCoordinator();
}

void Farm::StartCoordinator(int64_t lease_millis) {
  coordinator::CoordinatorServer::Options o;
  o.data_dir = dir_ + "/coordinator";
  o.grpc_listen = port_ ? absl::StrCat("127.0.0.1:", port_) : "127.0.0.1:0";
  o.http_listen = "127.0.0.1:0";
  o.heartbeat_interval_millis = 200;
  o.lease_millis = lease_millis;
  o.tick_interval_millis = 50;
  auto s = coordinator::CoordinatorServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  coordinator_ = *std::move(s);
  port_ = coordinator_->grpc_port();
  stub_ = kiln::v1::KilnService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
}

void Farm::StopCoordinator() {
  if (coordinator_) coordinator_->Shutdown();
  coordinator_.reset();
}

int Farm::StartAgent(int slots, std::map<std::string, std::string> labels) {
  agent::AgentClient::Options o;
  o.coordinators = {absl::StrCat("127.0.0.1:", port_)};
  o.work_dir = absl::StrCat(dir_, "/agent-", agents_.size());
  o.slots = slots;
  o.labels = std::move(labels);
  o.min_backoff = absl::Milliseconds(20);
  o.max_backoff = absl::Milliseconds(200);
  auto a = agent::AgentClient::Create(o);
  EXPECT_TRUE(a.ok()) << a.status();
  (*a)->Start();
  agents_.push_back(*std::move(a));
  return static_cast<int>(agents_.size()) - 1;
}

void Farm::StopAgent(int index) { agents_[index]->Stop(); }

kiln::v1::Project Farm::PutProject(const std::string& name, const std::string& repo, int limit,
                                   std::map<std::string, std::string> labels) {
  kiln::v1::PutProjectRequest req;
  auto* p = req.mutable_project();
  p->set_name(name);
  p->mutable_source()->set_type("git");
  p->mutable_source()->set_location(repo);
  p->mutable_source()->set_branch("main");
  p->mutable_source()->set_buildspec("buildspec.yml");
  p->set_concurrent_build_limit(limit);
  p->set_webhook_secret_parameter("/kiln/webhooks/" + name);
  for (auto& [k, v] : labels) (*p->mutable_agent_labels())[k] = v;
  kiln::v1::PutProjectResponse resp;
  grpc::Status s = stub_->PutProject(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.project();
}

Build Farm::StartBuild(const std::string& project, const std::string& version) {
  kiln::v1::StartBuildRequest req;
  req.set_project_name(project);
  req.set_source_version(version);
  kiln::v1::StartBuildResponse resp;
  grpc::Status s = stub_->StartBuild(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.build();
}

Build Farm::WaitForCompletion(const std::string& id, std::string* log) {
  auto ctx = Ctx(120);
  kiln::v1::StreamBuildLogsRequest req;
  req.set_build_id(id);
  req.set_follow(true);
  auto reader = stub_->StreamBuildLogs(ctx.get(), req);
  kiln::v1::StreamBuildLogsResponse r;
  Build last;
  std::string text;
  while (reader->Read(&r)) {
    if (r.has_build()) last = r.build();
    else text += r.data();
  }
  grpc::Status s = reader->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(last.build_complete()) << last.DebugString();
  if (log) *log = text;
  return last;
}

Build Farm::Follow(const std::string& id,
                   const std::function<bool(const Build&, const std::string&)>& done, std::string* log) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  kiln::v1::StreamBuildLogsRequest req;
  req.set_build_id(id);
  req.set_follow(true);
  auto reader = stub_->StreamBuildLogs(&ctx, req);
  kiln::v1::StreamBuildLogsResponse r;
  Build last;
  std::string text;
  while (reader->Read(&r)) {
    if (r.has_build()) last = r.build();
    else text += r.data();
    if (last.build_complete() || done(last, text)) break;
  }
  ctx.TryCancel();
  (void)reader->Finish();
  if (log) *log = std::move(text);
  return last;
}

Build Farm::WaitForPhase(const std::string& id, kiln::v1::BuildPhaseType::Value phase) {
  return Follow(id, [phase](const Build& b, const std::string&) { return b.current_phase() == phase; });
}

std::string Farm::WaitForLog(const std::string& id, const std::string& text) {
  std::string log;
  Follow(id, [&text](const Build&, const std::string& l) { return l.find(text) != std::string::npos; }, &log);
  return log;
}

void Farm::PutParameter(const std::string& name, const std::string& value, bool secure) {
  kiln::v1::PutParameterRequest req;
  req.set_name(name);
  req.set_value(value);
  req.set_type(secure ? kiln::v1::Parameter::SECURE_STRING : kiln::v1::Parameter::STRING);
  req.set_overwrite(true);
  kiln::v1::PutParameterResponse resp;
  grpc::Status s = stub_->PutParameter(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

}  // namespace kiln::test

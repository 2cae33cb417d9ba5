#include "agent/executor/process_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiln::agent {
namespace {

struct ProcInfo {
  pid_t pid, ppid, pgrp, sid;
  char state;
};

// Parses /proc/<pid>/stat: "pid (comm) state ppid pgrp session ...". comm may hold spaces and ')'.
bool ReadProc(pid_t pid, ProcInfo* info) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  int ppid, pgrp, sid;
  if (p == nullptr || sscanf(p + 1, " %c %d %d %d", &info->state, &ppid, &pgrp, &sid) != 4) {
    return false;
  }
  *info = {pid, ppid, pgrp, sid, info->state};
  return true;
}

std::vector<ProcInfo> ListProcesses() {
  std::vector<ProcInfo> procs;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return procs;
  while (dirent* e = readdir(dir)) {
    char* end;
    const long pid = strtol(e->d_name, &end, 10);
    ProcInfo info;
    if (*end == '\0' && pid > 0 && ReadProc(static_cast<pid_t>(pid), &info)) procs.push_back(info);
  }
  closedir(dir);
  return procs;
}

bool IsDead(char state) { return state == 'Z' || state == 'X'; }

}  // namespace

absl::Status BecomeChildSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return absl::InternalError(std::string("prctl(PR_SET_CHILD_SUBREAPER): ") + strerror(errno));
  }
  return absl::OkStatus();
}

void KillSession(pid_t sid) {
  if (sid <= 1) return;
  const pid_t self = getpid();
  std::set<pid_t> killed;  // signalled once; SIGKILL cannot be ignored, so we only wait for them
  const absl::Time give_up = absl::Now() + absl::Seconds(1);
  bool reaping_pass = false;
  for (int round = 0;; ++round) {
    const std::vector<ProcInfo> procs = ListProcesses();
    std::multimap<pid_t, pid_t> children;
    std::map<pid_t, ProcInfo> by_pid;
    for (const ProcInfo& p : procs) {
      children.emplace(p.ppid, p.pid);
      by_pid[p.pid] = p;
    }
    // Members: the session/group, everything signalled before, and all their descendants.
    std::set<pid_t> members;
    std::vector<pid_t> todo;
    for (const ProcInfo& p : procs) {
      if (p.sid == sid || p.pgrp == sid || p.pid == sid || killed.count(p.pid))
        todo.push_back(p.pid);
    }
    while (!todo.empty()) {
      const pid_t pid = todo.back();
      todo.pop_back();
      if (pid == self || pid <= 1 || !members.insert(pid).second) continue;
      auto [first, last] = children.equal_range(pid);
      for (auto it = first; it != last; ++it) todo.push_back(it->second);
    }
    bool any_alive = false;
    for (const pid_t pid : members) {
      const ProcInfo& p = by_pid[pid];
      if (IsDead(p.state)) {
        if (p.ppid == self && pid != sid) waitpid(pid, nullptr, WNOHANG);
        continue;
      }
      any_alive = true;
      if (killed.insert(pid).second) kill(pid, SIGKILL);
    }
    if (round == 0) kill(-sid, SIGKILL);  // also catches members forked while we listed
    if (absl::Now() >= give_up) return;
    if (!any_alive) {
      // One more pass: a child that died just before its parent was listed with that parent as
      // ppid, and is ours to reap only now.
      if (reaping_pass) return;
      reaping_pass = true;
      continue;
    }
    absl::SleepFor(absl::Milliseconds(round < 10 ? 1 : 10));  // bounded wait for SIGKILL to land
  }
}

void ReapSessionOrphans(pid_t sid) {
  const pid_t self = getpid();
  for (const ProcInfo& p : ListProcesses()) {
    if (p.sid == sid && p.pid != sid && p.ppid == self && IsDead(p.state))
      waitpid(p.pid, nullptr, WNOHANG);
  }
}

void WriteSessionFile(const std::string& workspace, pid_t sid, const std::string& build_id) {
  std::ofstream out(workspace + "/session", std::ios::trunc);
  out << sid << "\n" << build_id << "\n";
}

int KillLeftoverSessions(const std::string& builds_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  int killed = 0;
  for (const fs::directory_entry& ws : fs::directory_iterator(builds_dir, ec)) {
    std::ifstream in(ws.path() / "session");
    pid_t sid = 0;
    std::string build_id;
    if (in >> sid >> build_id && sid > 1) {
      std::ifstream env_file(absl::StrCat("/proc/", sid, "/environ"), std::ios::binary);
      std::string env((std::istreambuf_iterator<char>(env_file)), std::istreambuf_iterator<char>());
      const std::string marker = absl::StrCat("CODEBUILD_BUILD_ID=", build_id, std::string(1, '\0'));
      if (env.find(marker) != std::string::npos) {
        KillSession(sid);
        ++killed;
      }
    }
    fs::remove_all(ws.path(), ec);
  }
  return killed;
}

}  // namespace kiln::agent

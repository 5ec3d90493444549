// The /proc readers, on real processes: a command name with blanks and parentheses must not
// shift the fields after it, and a reaped process reads as gone.
#include "sys/proc.hpp"
#include "sys/cgroup.hpp"
#include "sys/remover.hpp"
#include "sys/spawner.hpp"
#include "temp_dir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>

namespace {

// A child that names itself like a stat line's own punctuation, then waits for the pipe to close.
pid_t hostile_child(int* release_fd) {
  int ready[2], release[2];
  if (pipe(ready) < 0 || pipe(release) < 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(release[1]);  // else the read below would never see the parent's close
    close(ready[0]);
    prctl(PR_SET_NAME, ") S 1 2 (x", 0, 0, 0);
    setsid();
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(1);
    (void)!read(release[0], &c, 1);
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char c;
  if (read(ready[0], &c, 1) != 1) return -1;
  close(ready[0]);
  *release_fd = release[1];
  return pid;
}

// A child that exits (status 0) once a byte is written to *go_fd; -1 when it cannot be made.
pid_t child_until_told(int* go_fd) {
  int go[2];
  if (pipe(go) < 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    char c;
    close(go[1]);
    _exit(read(go[0], &c, 1) == 1 ? 0 : 1);
  }
  close(go[0]);
  *go_fd = go[1];
  return pid;
}

TEST(Proc, FieldsAfterAHostileCommandName) {
  int release = -1;
  const pid_t pid = hostile_child(&release);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(repvisor::sys::process_session(pid), getsid(pid));
  EXPECT_EQ(repvisor::sys::process_session(pid), pid);  // it called setsid()
  const uint64_t child_start = repvisor::sys::process_start_time(pid);
  EXPECT_GT(child_start, 0u);
  EXPECT_GE(child_start, repvisor::sys::process_start_time(getpid()));
  const auto members = repvisor::sys::session_members(pid);
  EXPECT_NE(std::find(members.begin(), members.end(), pid), members.end());
  const auto children = repvisor::sys::thread_children();
  EXPECT_NE(std::find(children.begin(), children.end(), pid), children.end());

  close(release);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_EQ(repvisor::sys::process_start_time(pid), 0u);
  EXPECT_EQ(repvisor::sys::process_session(pid), -1);
  EXPECT_TRUE(repvisor::sys::process_cgroup(pid).empty());
}

TEST(Proc, OwnCgroupIsAnAbsolutePath) {
  const std::string cg = repvisor::sys::process_cgroup(getpid());
  ASSERT_FALSE(cg.empty());
  EXPECT_EQ(cg.front(), '/');
}

TEST(Spawner, ItsChildrenAreNotTheCallingThreadsYetAreWaitedForFromIt) {
  // The loop thread's children list must hold only orphans (sys/spawner.hpp): a spawned
  // process is the spawner thread's child, and still ours to wait for through its pidfd.
  repvisor::sys::Spawner spawner;
  repvisor::sys::SpawnRequest req;
  req.executable = "/bin/sh";
  req.argv = {"sh", "-c", "exit 7"};
  req.working_directory = "/";
  repvisor::sys::Spawned child;
  ASSERT_EQ(spawner.spawn(req, &child), 0);
  ASSERT_GT(child.pid, 0);
  // Read on the spawner's thread; unreaped, the child is still there to compare with.
  EXPECT_NE(child.start_time, 0u);
  EXPECT_EQ(child.start_time, repvisor::sys::process_start_time(child.pid));
  const auto children = repvisor::sys::thread_children();
  EXPECT_EQ(std::find(children.begin(), children.end(), child.pid), children.end());
  EXPECT_FALSE(repvisor::sys::thread_has_children());  // so the end of a job reads no children list
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PIDFD, static_cast<id_t>(child.pidfd.get()), &si, WEXITED), 0) << strerror(errno);
  EXPECT_EQ(si.si_pid, child.pid);
  EXPECT_EQ(si.si_code, CLD_EXITED);
  EXPECT_EQ(si.si_status, 7);

  // A failed exec is reported to the caller, as sys::spawn() does.
  req.executable = "/nonexistent/program";
  repvisor::sys::Spawned none;
  EXPECT_EQ(spawner.spawn(req, &none), -ENOENT);
}

TEST(Proc, AZombieStillNamesTheCgroupRemovedUnderIt) {
  // The job's cgroup is removed while its orphans may still be exiting (sys/remover.hpp); they
  // are found by the cgroup they name, which the kernel then marks " (deleted)".
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  ASSERT_FALSE(mount.empty());
  const std::string own = repvisor::sys::process_cgroup(getpid());
  const std::string cg = (own == "/" ? "" : own) + "/repvisor-test-zombie-" + std::to_string(getpid());
  const std::string dir = mount + cg;
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
  int go = -1;
  const pid_t pid = child_until_told(&go);
  ASSERT_GT(pid, 0) << strerror(errno);
  std::ofstream(dir + "/cgroup.procs") << pid << std::endl;
  EXPECT_EQ(repvisor::sys::process_cgroup(pid), cg);
  ASSERT_EQ(write(go, "x", 1), 1);
  close(go);
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOWAIT), 0);  // a zombie, not reaped
  ASSERT_EQ(rmdir(dir.c_str()), 0) << strerror(errno);                          // a zombie does not populate it
  EXPECT_EQ(repvisor::sys::process_cgroup(pid), cg);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
}

TEST(Cgroup, ItsEventsFileKeptOpenTellsEachChange) {
  // The supervisor opens a job's cgroup.events once and preads it on every event: each read must
  // be current, and the open file must not keep the cgroup from being removed.
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  ASSERT_FALSE(mount.empty());
  const std::string own = repvisor::sys::process_cgroup(getpid());
  const std::string dir = mount + (own == "/" ? "" : own) + "/repvisor-test-events-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
  repvisor::Fd dirfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)), events;
  ASSERT_TRUE(dirfd);
  ASSERT_EQ(repvisor::sys::CgroupTree::open_events(dirfd.get(), &events), 0);
  EXPECT_FALSE(repvisor::sys::CgroupTree::populated(events.get()));
  int go = -1;
  const pid_t pid = child_until_told(&go);
  ASSERT_GT(pid, 0) << strerror(errno);
  std::ofstream(dir + "/cgroup.procs") << pid << std::endl;
  EXPECT_TRUE(repvisor::sys::CgroupTree::populated(events.get()));
  EXPECT_TRUE(repvisor::sys::CgroupTree::populated(events.get()));  // read again, from the start
  ASSERT_EQ(write(go, "x", 1), 1);
  close(go);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_FALSE(repvisor::sys::CgroupTree::populated(events.get()));
  EXPECT_EQ(rmdir(dir.c_str()), 0) << strerror(errno);
  EXPECT_FALSE(repvisor::sys::CgroupTree::populated(events.get()));  // removed: holds nothing
  EXPECT_EQ(repvisor::sys::CgroupTree::open_events(dirfd.get(), &events), -ENOENT);
}

TEST(Proc, ThreadHasChildrenWhileOneRunsAndUntilItIsReaped) {
  // The supervisor skips its scan for exiting orphans when this says none: a child still
  // running, or a zombie not yet reaped, must count, and looking must not reap it.
  EXPECT_FALSE(repvisor::sys::thread_has_children());
  int go = -1;
  const pid_t pid = child_until_told(&go);
  ASSERT_GT(pid, 0) << strerror(errno);
  EXPECT_TRUE(repvisor::sys::thread_has_children());  // running
  ASSERT_EQ(write(go, "x", 1), 1);
  close(go);
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOWAIT), 0);  // now a zombie
  EXPECT_TRUE(repvisor::sys::thread_has_children());
  EXPECT_TRUE(repvisor::sys::thread_has_children());  // still: looking did not reap it
  const auto children = repvisor::sys::thread_children();
  EXPECT_NE(std::find(children.begin(), children.end(), pid), children.end());
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_FALSE(repvisor::sys::thread_has_children());
}

TEST(Cgroup, ItsKillFileKeptOpenKillsTheTreeAndDoesNotKeepTheCgroup) {
  // A stop's kill is one write to the cgroup.kill opened when the job started: it must reach a
  // process and the child it forked, and the open file must not keep the cgroup from removal.
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  ASSERT_FALSE(mount.empty());
  const std::string own = repvisor::sys::process_cgroup(getpid());
  const std::string name = "repvisor-test-kill-" + std::to_string(getpid());
  const std::string dir = mount + (own == "/" ? "" : own) + "/" + name;
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
  repvisor::Fd dirfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)), kill_fd, events;
  ASSERT_TRUE(dirfd);
  ASSERT_EQ(repvisor::sys::CgroupTree::open_kill(dirfd.get(), &kill_fd), 0) << "kernel without cgroup.kill?";
  ASSERT_EQ(repvisor::sys::CgroupTree::open_events(dirfd.get(), &events), 0);
  int ready[2], moved[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(moved), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    close(moved[1]);
    char m;
    if (read(moved[0], &m, 1) != 1) _exit(1);  // in the cgroup now: the grandchild is born in it
    if (fork() == 0) {                         // the grandchild, which ignores SIGTERM
      signal(SIGTERM, SIG_IGN);
      (void)!write(ready[1], "g", 1);
      for (;;) pause();
    }
    (void)!write(ready[1], "c", 1);
    for (;;) pause();
  }
  close(ready[1]);
  close(moved[0]);
  std::ofstream(dir + "/cgroup.procs") << pid << std::endl;
  ASSERT_EQ(write(moved[1], "m", 1), 1);
  close(moved[1]);
  char c[2];
  ASSERT_EQ(read(ready[0], c, 1), 1);
  ASSERT_EQ(read(ready[0], c + 1, 1), 1);
  close(ready[0]);
  EXPECT_TRUE(repvisor::sys::CgroupTree::populated(events.get()));
  ASSERT_EQ(repvisor::sys::CgroupTree::kill(kill_fd.get()), 0);
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED), 0);
  EXPECT_EQ(si.si_code, CLD_KILLED);
  EXPECT_EQ(si.si_status, SIGKILL);
  // The grandchild is init's now (or a subreaper's): its end shows as the cgroup emptying.
  int fd = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_GE(inotify_add_watch(fd, (dir + "/cgroup.events").c_str(), IN_MODIFY), 0);
  while (repvisor::sys::CgroupTree::populated(events.get())) {
    char buf[256];
    ASSERT_GT(read(fd, buf, sizeof buf), 0);
  }
  close(fd);
  EXPECT_EQ(rmdir(dir.c_str()), 0) << strerror(errno);           // the open cgroup.kill does not keep it
  EXPECT_LT(repvisor::sys::CgroupTree::kill(kill_fd.get()), 0);  // a removed cgroup: an error, not a hang
  // By name, a removed cgroup reads as no cgroup.kill, for which the fallback finds nothing.
  const std::string parent = mount + (own == "/" ? "" : own) + "/repvisor-test-tree-" + std::to_string(getpid());
  std::string why;
  auto tree = repvisor::sys::CgroupTree::open(parent, "proc-test", &why);
  ASSERT_TRUE(tree) << why;
  EXPECT_EQ(tree->kill(name), -ENOENT);
  EXPECT_EQ(tree->signal_all(name, SIGKILL), 0);
  tree.reset();
  EXPECT_EQ(rmdir(parent.c_str()), 0) << strerror(errno);
}

TEST(Cgroup, ATreeMarksWhatItCreatesAndOwnsNothingElse) {
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  ASSERT_FALSE(mount.empty());
  const std::string own = repvisor::sys::process_cgroup(getpid());
  const std::string parent = mount + (own == "/" ? "" : own) + "/repvisor-test-owner-" + std::to_string(getpid());
  std::string why;
  {
    auto tree = repvisor::sys::CgroupTree::open(parent, "/state/a", &why);
    ASSERT_TRUE(tree) << why;
    repvisor::Fd dir;
    ASSERT_EQ(tree->create("job-mine", &dir), 0);
    EXPECT_TRUE(tree->owns("job-mine"));
    ASSERT_EQ(mkdir((parent + "/job-by-hand").c_str(), 0755), 0);
    EXPECT_FALSE(tree->owns("job-by-hand"));
    // One daemon per root: a second open is refused, naming the holder's state directory.
    try {
      repvisor::sys::CgroupTree::open(parent, "/state/b", &why);
      ADD_FAILURE() << "a second tree on a locked root";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("in use by another repvisord (state directory /state/a)"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(tree->remove("job-mine"), 0);
    EXPECT_EQ(tree->remove("job-by-hand"), 0);
  }
  // Closed, the root is free for the next daemon, which owns none of the first one's cgroups.
  auto next = repvisor::sys::CgroupTree::open(parent, "/state/b", &why);
  ASSERT_TRUE(next) << why;
  repvisor::Fd dir;
  ASSERT_EQ(mkdir((parent + "/job-old").c_str(), 0755), 0);
  ASSERT_EQ(setxattr((parent + "/job-old").c_str(), "trusted.repvisor.owner", "/state/a", 8, 0), 0);
  EXPECT_FALSE(next->owns("job-old"));
  EXPECT_EQ(next->remove("job-old"), 0);
  next.reset();
  EXPECT_EQ(rmdir(parent.c_str()), 0) << strerror(errno);
}

TEST(Cgroup, AutoRootNamesDifferByStateDirectoryAndStayTheSame) {
  using repvisor::sys::auto_root_name;
  EXPECT_EQ(auto_root_name("/var/lib/repvisor"), auto_root_name("/var/lib/repvisor"));
  EXPECT_NE(auto_root_name("/var/lib/repvisor"), auto_root_name("/srv/repvisor"));
  EXPECT_EQ(auto_root_name("/var/lib/repvisor").rfind("repvisor-", 0), 0u);
  EXPECT_EQ(auto_root_name("/var/lib/repvisor").size(), 17u);
}

// Directories for the Remover, under a temporary parent.
class RemoverTest : public ::testing::Test {
 protected:
  std::string dir(int i, bool with_file = false) {
    std::string d = root_ + "/d" + std::to_string(i);
    mkdir(d.c_str(), 0755);
    if (with_file) std::ofstream(d + "/f") << "x";
    return d;
  }
  repvisor::test::TempDir tmp_{"remover"};
  const std::string& root_ = tmp_.path();
};

TEST_F(RemoverTest, EachRemovalGetsItsOwnResultInAnyOrder) {
  // Many handed over at once and taken in reverse: some done by the thread, some by take()
  // before the thread got to them. Either way each result is its own directory's.
  repvisor::sys::Remover remover;
  constexpr int kDirs = 300;
  std::vector<std::shared_ptr<repvisor::sys::Removal>> rs;
  for (int i = 0; i < kDirs; ++i) rs.push_back(remover.submit(i % 7 == 3 ? root_ + "/never-made" : dir(i, i % 5 == 2)));
  for (int i = kDirs - 1; i >= 0; --i) {
    const int r = remover.take(*rs[i]);
    EXPECT_EQ(r, i % 5 == 2 && i % 7 != 3 ? -ENOTEMPTY : 0) << i;  // gone already is removed
    EXPECT_EQ(rs[i]->state.load(), repvisor::sys::Remover::kDone);
  }
  for (int i = 0; i < kDirs; ++i)
    EXPECT_EQ(std::filesystem::exists(root_ + "/d" + std::to_string(i)), i % 5 == 2 && i % 7 != 3) << i;
}

TEST_F(RemoverTest, TheThreadRemovesWhatIsHandedOverWithoutBeingAsked) {
  repvisor::sys::Remover remover;
  const std::string d = dir(1);
  const int in = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, root_.c_str(), IN_DELETE), 0);
  auto r = remover.submit(d);
  char buf[4096];
  ASSERT_GT(read(in, buf, sizeof buf), 0);  // the thread removed it; nobody took it yet
  close(in);
  EXPECT_FALSE(std::filesystem::exists(d));
  EXPECT_EQ(remover.take(*r), 0);
}

TEST_F(RemoverTest, OneNotBegunIsDoneByTakeAtOnce) {
  // take() claims what the thread has not begun: here one it was never handed.
  repvisor::sys::Remover remover;
  repvisor::sys::Removal r;
  r.path = dir(1);
  EXPECT_EQ(remover.take(r), 0);
  EXPECT_FALSE(std::filesystem::exists(r.path));
}

TEST_F(RemoverTest, WhatIsQueuedIsRemovedBeforeItStops) {
  std::vector<std::string> dirs;
  {
    repvisor::sys::Remover remover;
    for (int i = 0; i < 50; ++i) remover.submit(dirs.emplace_back(dir(i)));
  }
  for (const auto& d : dirs) EXPECT_FALSE(std::filesystem::exists(d)) << d;
}

// What /proc/PID/fd (or /proc/self/fd) says each open descriptor refers to.
std::map<int, std::string> open_descriptors(const std::string& dir) {
  std::map<int, std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec) fds[std::stoi(e.path().filename().string())] = target.string();
  }
  return fds;
}

TEST(Spawner, AChildGetsItsOutputAndPassedDescriptorsInPlaceAndNothingElse) {
  // The child starts on our descriptor table and keeps only its slots (sys/spawn.hpp): what it
  // is given must arrive at 0-4 whatever numbers it had here, and none of the many descriptors
  // we hold (close-on-exec or not) may follow it.
  repvisor::test::TempDir dir("spawn-fds");
  repvisor::sys::Spawner spawner;
  std::vector<repvisor::Fd> ours;  // the daemon's per-job descriptors, above the slots
  for (int i = 0; i < 300; ++i) ours.emplace_back(open("/dev/null", O_RDONLY));
  const std::string out_path = dir.path() + "/out", a_path = dir.path() + "/a", b_path = dir.path() + "/b";
  repvisor::Fd out(open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  repvisor::Fd a(open(a_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0600));
  repvisor::Fd b(open(b_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(out && a && b);
  repvisor::Fd a_high(dup3(a.get(), 1000, O_CLOEXEC));  // far above anything the child copies
  ASSERT_EQ(a_high.get(), 1000) << strerror(errno);

  repvisor::sys::SpawnRequest req;
  req.executable = "/bin/ls";
  req.argv = {"ls", "-n", "/proc/self/fd"};  // -n: no user database opened while it lists
  req.working_directory = "/";
  req.output_fd = out.get();
  req.pass_fds = {a_high.get(), b.get()};
  repvisor::sys::Spawned child;
  ASSERT_EQ(spawner.spawn(req, &child), 0);
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PIDFD, static_cast<id_t>(child.pidfd.get()), &si, WEXITED), 0) << strerror(errno);
  ASSERT_EQ(si.si_status, 0);

  std::map<int, std::string> seen;
  std::ifstream listing(out_path);
  for (std::string line; std::getline(listing, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    const auto name = line.rfind(' ', arrow - 1);
    seen[std::stoi(line.substr(name + 1, arrow - name - 1))] = line.substr(arrow + 4);
  }
  listing.close();
  ASSERT_EQ(seen.size(), 6u) << "ls's own directory is the 6th: any more leaked from us";
  EXPECT_EQ(seen[0], "/dev/null");
  EXPECT_EQ(seen[1], out_path);
  EXPECT_EQ(seen[2], out_path);
  EXPECT_EQ(seen[3], a_path);
  EXPECT_EQ(seen[4], b_path);
  EXPECT_EQ(seen[5].rfind("/proc/", 0), 0u) << seen[5];

  // Our table is as it was: the slots let go of what they held for the child.
  const auto mine = open_descriptors("/proc/self/fd");
  EXPECT_EQ(std::count_if(mine.begin(), mine.end(), [&](const auto& fd) { return fd.second == out_path; }), 1);
  EXPECT_EQ(std::count_if(mine.begin(), mine.end(), [&](const auto& fd) { return fd.second == a_path; }), 2);
  EXPECT_EQ(mine.at(1000), a_path);
}

TEST(Spawner, TooManyPassedDescriptorsAreRefusedBeforeAnyChild) {
  repvisor::sys::Spawner spawner;
  repvisor::sys::SpawnRequest req;
  req.executable = "/bin/true";
  req.argv = {"true"};
  req.working_directory = "/";
  req.pass_fds.assign(repvisor::sys::kMaxPassFds + 1, STDIN_FILENO);
  repvisor::sys::Spawned none;
  EXPECT_EQ(spawner.spawn(req, &none), -E2BIG);
  EXPECT_FALSE(repvisor::sys::thread_has_children());
}

TEST(Spawner, SpawnsSubmittedTogetherEachReturnTheirOwnResult) {
  // Several under way at once on its threads (more than it has): each task gets its own child
  // or error, whatever the order in which they finish.
  repvisor::sys::Spawner spawner(2);
  constexpr int kTasks = 7;
  std::vector<repvisor::sys::SpawnRequest> reqs(kTasks);
  std::vector<repvisor::sys::SpawnTask> tasks(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    reqs[i].executable = i == 3 ? "/nonexistent/program" : "/bin/sh";
    reqs[i].argv = {"sh", "-c", "exit " + std::to_string(10 + i)};
    reqs[i].working_directory = i == 5 ? "/nonexistent" : "/";
    tasks[i].req = &reqs[i];
    spawner.submit(&tasks[i]);
  }
  for (int i = kTasks - 1; i >= 0; --i) {  // waited for in reverse: the order must not matter
    const int r = spawner.wait(&tasks[i]);
    if (i == 3 || i == 5) {
      EXPECT_EQ(r, -ENOENT) << i;
      EXPECT_FALSE(tasks[i].child.pidfd) << i;
      continue;
    }
    ASSERT_EQ(r, 0) << i;
    siginfo_t si{};
    ASSERT_EQ(waitid(P_PIDFD, static_cast<id_t>(tasks[i].child.pidfd.get()), &si, WEXITED), 0) << strerror(errno);
    EXPECT_EQ(si.si_pid, tasks[i].child.pid);
    EXPECT_EQ(si.si_status, 10 + i) << "task " << i << " got another task's child";
  }
}

}  // namespace

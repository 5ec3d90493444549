// repvisorctl against a real daemon: failures reported with their reasons, the documented exit
// codes, the words it answers with.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "client.hpp"
#include "harness.hpp"

using namespace repvisor::test;

namespace {

struct CtlTest : ::testing::Test {
  Daemon daemon;
  std::string out;
  std::string ctl(const std::string& args) {
    return std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " " + args;
  }
  int jobs() {
    Bus bus(daemon.address());
    return static_cast<int>(bus.list().size());
  }
};

// The job id in "Submitted job ID" or a failure message that names it.
std::string id_in(const std::string& s) {
  for (size_t i = 0; i + 32 <= s.size(); ++i)
    if (s.find_first_not_of("0123456789abcdef", i) >= i + 32) return s.substr(i, 32);
  return {};
}

}  // namespace

TEST_F(CtlTest, SubmitOfAMissingCommandFailsWithTheReason) {
  EXPECT_EQ(run_command(ctl("submit -- /nonexistent/cmd"), &out), 1) << out;
  EXPECT_NE(out.find("failed to start: could not start /nonexistent/cmd: No such file or directory"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("Submitted"), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("submit -- no-such-command"), &out), 1) << out;
  EXPECT_NE(out.find("could not start no-such-command: No such file or directory"), std::string::npos) << out;

  // --wait says why, not only "failed".
  EXPECT_EQ(run_command(ctl("submit --wait -- /nonexistent/cmd"), &out), 10) << out;
  EXPECT_NE(out.find("failed: could not start /nonexistent/cmd: No such file or directory"), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("submit --wait -- sh -c 'exit 3'"), &out), 10) << out;
  EXPECT_NE(out.find("failed: exited with status 3"), std::string::npos) << out;

  // A command that starts is submitted, however soon it ends.
  EXPECT_EQ(run_command(ctl("submit -- false"), &out), 0) << out;
  EXPECT_NE(out.find("Submitted job"), std::string::npos) << out;
}

TEST_F(CtlTest, SubmitWithoutDashDashSaysWhereTheCommandGoes) {
  EXPECT_EQ(run_command(ctl("submit sleep 1"), &out), 2) << out;
  EXPECT_NE(out.find("the command goes after '--': repvisorctl submit [OPTIONS] -- sleep 1"), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("submit --name x sleep 1"), &out), 2) << out;
  EXPECT_NE(out.find("-- sleep 1\n"), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("submit --env A=B --env C=D --wait -- sh -c 'test \"$A$C\" = BD'"), &out), 0) << out;
  EXPECT_EQ(run_command(ctl("submit --env A=B --env C=D sleep 1"), &out), 2) << out;
  EXPECT_NE(out.find("the command goes after '--': repvisorctl submit [OPTIONS] -- sleep 1\n"), std::string::npos)
      << out;
  EXPECT_EQ(run_command(ctl("submit --bogus -- true"), &out), 2) << out;
  EXPECT_NE(out.find("--bogus"), std::string::npos) << out;
  EXPECT_EQ(jobs(), 1) << "a refused command line submits nothing";
}

TEST_F(CtlTest, AJobGoneBetweenLookupAndCallIsNoSuchJob) {
  // What a stop racing a delete meets: the job's object is gone when the call arrives.
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  ASSERT_TRUE(bus.remove(id, {}).ok);
  repvisor::ctl::Client c(daemon.address());
  const std::string path = "/org/repvisor1/job/" + id;
  try {
    c.call_dict(path.c_str(), "org.repvisor1.Job", "Stop", {}, {});
    ADD_FAILURE() << "Stop of a deleted job succeeded";
  } catch (const repvisor::ctl::CtlError& e) {
    EXPECT_EQ(e.exit_code, repvisor::ctl::kExitNoSuchJob) << e.what();
    EXPECT_NE(std::string(e.what()).find("gone"), std::string::npos) << e.what();
  }
  try {
    c.job_properties(path);
    ADD_FAILURE() << "the properties of a deleted job were read";
  } catch (const repvisor::ctl::CtlError& e) {
    EXPECT_EQ(e.exit_code, repvisor::ctl::kExitNoSuchJob) << e.what();
  }
}

TEST_F(CtlTest, OneDaemonIsNamedOnce) {
  for (const std::string other : {"--system", "--address unix:path=/x", "-H somewhere"}) {
    EXPECT_EQ(run_command(ctl(other + " list"), &out), 2) << other << ": " << out;
    EXPECT_NE(out.find("--runtime-dir"), std::string::npos) << out;
  }
  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --address unix:path=/x --system list", &out), 2) << out;
}

TEST_F(CtlTest, AnUnreachableHostIsExitSix) {
  // An ssh that cannot connect, as a real one says it.
  const std::string bin = daemon.dir + "/bin";
  std::filesystem::create_directories(bin);
  std::ofstream(bin + "/ssh") << "#!/bin/sh\necho \"ssh: connect to host $3 port 22: Connection refused\" >&2\n"
                                 "exit 255\n";
  std::filesystem::permissions(bin + "/ssh", std::filesystem::perms::owner_all);
  EXPECT_EQ(run_command("PATH=" + bin + ":$PATH " + REPVISORCTL_PATH + " -H nobody@example.invalid list", &out), 6)
      << out;
  EXPECT_NE(out.find("ssh"), std::string::npos) << out;
}

TEST_F(CtlTest, ASocketNotOpenToTheUserIsExitFiveWithTheGroup) {
  // The directories are passable, the socket itself is not open to others.
  for (const std::string& d : {daemon.dir, daemon.runtime_dir}) chmod(d.c_str(), 0755);
  struct stat st {};
  ASSERT_EQ(stat((daemon.runtime_dir + "/private").c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & S_IWOTH, 0u) << "the socket is open to everyone";
  const group* gr = getgrgid(st.st_gid);
  ASSERT_NE(gr, nullptr);
  const std::string group_name = gr->gr_name;
  EXPECT_EQ(run_command("setpriv --reuid=65534 --regid=65534 --clear-groups " + ctl("list"), &out), 5) << out;
  EXPECT_NE(out.find("add yourself to the group '" + group_name + "' (the socket's group), or use sudo"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("is repvisord running"), std::string::npos) << out;
}

TEST_F(CtlTest, InterruptedLogsFollowIsExit130) {
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  const std::string id =
      bus.submit_ok({"sh", "-c", "echo first-line; echo ready > " + ready.path() + "; exec sleep 1000"});
  ready.wait_line();
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  const std::string rdir = daemon.runtime_dir;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    execl(REPVISORCTL_PATH, REPVISORCTL_PATH, "--runtime-dir", rdir.c_str(), "logs", "-f", id.c_str(), nullptr);
    _exit(127);
  }
  close(pipefd[1]);
  // Once it has printed the log, it follows.
  std::string got;
  while (got.find("first-line\n") == std::string::npos) {
    pollfd p{pipefd[0], POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)), 1) << "logs -f printed " << got;
    char buf[256];
    const ssize_t n = read(pipefd[0], buf, sizeof buf);
    ASSERT_GT(n, 0) << got;
    got.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(pipefd[0]);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 130);
}

TEST_F(CtlTest, UnknownCommandsAndHelp) {
  EXPECT_EQ(run_command(ctl("bogus"), &out), 2) << out;
  EXPECT_NE(out.find("unknown command 'bogus'"), std::string::npos) << out;
  for (const char* verb : {"submit", "list", "status", "stop", "delete", "logs", "events", "watch"})
    EXPECT_NE(out.find(std::string("  ") + verb + " "), std::string::npos) << verb << " not listed: " << out;

  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " help", &out), 0) << out;
  EXPECT_NE(out.find("repvisorctl"), std::string::npos) << out;
  EXPECT_NE(out.find("submit"), std::string::npos) << out;
  EXPECT_NE(out.find("cleanup"), std::string::npos) << out;
  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " help stop", &out), 0) << out;
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_NE(out.find("repvisorctl stop"), std::string::npos) << "the usage line names the program: " << out;
  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " help bogus", &out), 2) << out;

  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " events --help", &out), 0) << out;
  EXPECT_NE(out.find("--limit N"), std::string::npos) << out;
  EXPECT_NE(out.find("(1-100000"), std::string::npos) << out;
}

TEST_F(CtlTest, HintsFitTheVerbAndTheState) {
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok(stubborn(ready), {{"name", std::string("stubborn")}});
  ready.wait_line();
  // resume and cleanup have no --force to suggest.
  EXPECT_EQ(run_command(ctl("resume stubborn"), &out), 4) << out;
  EXPECT_EQ(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("cleanup stubborn"), &out), 4) << out;
  EXPECT_EQ(out.find("--force"), std::string::npos) << out;

  // A stopping job is said to be stopping, not running.
  ASSERT_TRUE(bus.stop(id, {{"wait", false}, {"timeout_usec", uint64_t{60'000'000}}}).ok);
  bus.wait_state(id, "stopping");
  EXPECT_EQ(run_command(ctl("delete stubborn --yes"), &out), 4) << out;
  EXPECT_NE(out.find("it is stopping"), std::string::npos) << out;
  EXPECT_EQ(out.find("still running"), std::string::npos) << out;
  ASSERT_EQ(run_command(ctl("delete stubborn --yes --force"), &out), 0) << out;
}

TEST(CtlPending, DeleteOfAPendingJobSaysItIsPending) {
  Daemon daemon("max_concurrent_jobs = 1");
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  bus.submit_ok(polite(ready));
  ready.wait_line();
  const std::string waiting = bus.submit_ok({"true"}, {{"name", std::string("waiting")}});
  ASSERT_EQ(bus.prop_s(waiting, "State"), "pending");
  std::string out;
  EXPECT_EQ(run_command(
                std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " delete waiting --yes", &out),
            4)
      << out;
  EXPECT_NE(out.find("it is pending"), std::string::npos) << out;
  EXPECT_EQ(out.find("still running"), std::string::npos) << out;
}

TEST_F(CtlTest, DeleteSaysWhatItRemovedAndKept) {
  const std::string vol = daemon.dir + "/volumes";
  const std::string file = daemon.dir + "/job.toml";
  auto submit = [&](const std::string& name) {
    std::ofstream(file) << "argv = [\"sh\", \"-c\", \"echo out\"]\nname = \"" << name
                        << "\"\n[[resources]]\nkind = \"file\"\nname = \"dst\"\npath = \"" << vol << "/" << name
                        << ".img\"\nsize = 1048576\n";
    EXPECT_EQ(run_command(ctl("submit --wait -F " + file), &out), 0) << out;
  };
  submit("gone");
  Bus bus(daemon.address());
  const std::string gone_id = id_in(bus.get_job("gone").s1);
  ASSERT_EQ(run_command(ctl("delete gone --yes"), &out), 0) << out;
  EXPECT_NE(out.find("Deleted job gone (" + gone_id + ")"), std::string::npos) << "the full id: " << out;
  EXPECT_NE(out.find("volume 'dst' " + vol + "/gone.img: removed"), std::string::npos) << out;
  EXPECT_NE(out.find(": removed"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(vol + "/gone.img"));
  ASSERT_EQ(run_command(ctl("events " + gone_id), &out), 0) << out;
  EXPECT_NE(out.find("deleted"), std::string::npos) << out;

  submit("kept");
  Bus bus2(daemon.address());
  const std::string log = bus2.prop_s(id_in(bus2.get_job("kept").s1), "LogPath");
  ASSERT_FALSE(log.empty());
  ASSERT_EQ(run_command(ctl("delete kept --yes --keep-data"), &out), 0) << out;
  EXPECT_NE(out.find("volume 'dst' " + vol + "/kept.img: kept (--keep-data)"), std::string::npos) << out;
  EXPECT_NE(out.find("log " + log + ": kept"), std::string::npos) << "the kept log's path: " << out;
  EXPECT_TRUE(std::filesystem::exists(vol + "/kept.img"));
  EXPECT_TRUE(std::filesystem::exists(log));
}

TEST(CtlAmbiguous, AnAmbiguousPrefixListsTheJobsItMatches) {
  Daemon daemon("max_concurrent_jobs = 1");
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  bus.submit_ok(polite(ready));
  ready.wait_line();
  // Ids are random: jobs are queued (they never run) until two share their first four digits,
  // the shortest prefix the daemon takes.
  std::map<std::string, std::string> by_prefix;
  std::string first, second;
  for (int i = 0; i < 5000 && first.empty(); ++i) {
    const std::string id = bus.submit_ok({"true"});
    ASSERT_FALSE(id.empty());
    if (auto [it, fresh] = by_prefix.emplace(id.substr(0, 4), id); !fresh) first = it->second, second = id;
  }
  ASSERT_FALSE(first.empty()) << "no two of 5000 ids share four digits";
  std::string out;
  const std::string prefix = first.substr(0, 4);
  EXPECT_EQ(
      run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " status " + prefix, &out),
      7)
      << out;
  EXPECT_NE(out.find("job id prefix '" + prefix + "' is ambiguous; it matches:"), std::string::npos) << out;
  EXPECT_NE(out.find("\n  " + first + "  "), std::string::npos) << out;
  EXPECT_NE(out.find("\n  " + second + "  "), std::string::npos) << out;
  EXPECT_NE(out.find("pending"), std::string::npos) << out;
}

TEST_F(CtlTest, LogsTailAndJson) {
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done"});
  bus.wait_terminal(id);
  ASSERT_EQ(run_command(ctl("logs " + id + " -n 2") + " 2>/dev/null", &out), 0) << out;
  EXPECT_EQ(out, "line4\nline5\n");
  ASSERT_EQ(run_command(ctl("logs " + id + " --tail 0") + " 2>/dev/null", &out), 0) << out;
  EXPECT_EQ(out, "");
  ASSERT_EQ(run_command(ctl("logs " + id + " --tail 100") + " 2>/dev/null", &out), 0) << out;
  EXPECT_EQ(out, "line1\nline2\nline3\nline4\nline5\n");
  EXPECT_EQ(run_command(ctl("logs " + id + " -n -1"), &out), 2) << out;

  ASSERT_EQ(run_command(ctl("--json logs " + id) + " 2>/dev/null", &out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["job"], id);
  EXPECT_EQ(j["log"], "line1\nline2\nline3\nline4\nline5\n");
  EXPECT_EQ(j["log_path"], bus.prop_s(id, "LogPath"));
  ASSERT_EQ(run_command(ctl("logs -n 1 --json " + id) + " 2>/dev/null", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["log"], "line5\n");
  // Following a finished job prints what there is, a JSON line for each piece, and ends.
  ASSERT_EQ(run_command(ctl("logs -f -n 2 --json " + id) + " 2>/dev/null", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["log"], "line4\nline5\n");
}

TEST_F(CtlTest, StatusShowsBytesRateAndEta) {
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok(
      {"sh", "-c",
       "systemd-notify BYTES_TOTAL=4194304 BYTES_DONE=1048576; echo ready > " + ready.path() + "; exec sleep 1000"});
  ready.wait_line();
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "BytesDone") == 1048576; });
  ASSERT_EQ(run_command(ctl("status " + id), &out), 0) << out;
  EXPECT_NE(out.find("Bytes: 1.0 MiB of 4.0 MiB (25%), "), std::string::npos) << out;
  EXPECT_NE(out.find("/s, about "), std::string::npos) << out;
  EXPECT_NE(out.find(" left"), std::string::npos) << out;
}

TEST(CtlQueue, StatusOfAPendingJobShowsItsPlaceInTheQueue) {
  Daemon daemon("max_concurrent_jobs = 1");
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  bus.submit_ok(polite(ready));
  ready.wait_line();
  bus.submit_ok({"true"});
  const std::string second = bus.submit_ok({"true"});
  bus.submit_ok({"true"});
  std::string out;
  ASSERT_EQ(
      run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " status " + second, &out),
      0)
      << out;
  EXPECT_NE(out.find("Queue: 2 of 3 pending (1 before it)"), std::string::npos) << out;
}

// Every key of every JSON document, at any depth, is snake_case.
static void expect_snake_case(const nlohmann::json& j, const std::string& where) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      EXPECT_TRUE(!k.empty() && k.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos &&
                  islower(static_cast<unsigned char>(k[0])))
          << where << ": key '" << k << "'";
      expect_snake_case(v, where);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) expect_snake_case(v, where);
  }
}

TEST_F(CtlTest, JsonKeysAreSnakeCaseInEveryVerb) {
  ReadyFifo ready(daemon.dir);
  const std::string file = daemon.dir + "/job.toml";
  std::ofstream(file) << "argv = [\"sh\", \"-c\", \"echo ready > " << ready.path()
                      << "; exec sleep 1000\"]\nname = \"j\"\n[[resources]]\nkind = \"file\"\nname = \"dst\"\npath = \""
                      << daemon.dir << "/volumes/j.img\"\nsize = 1048576\n";
  auto json_of = [&](const std::string& args, int expect = 0) {
    EXPECT_EQ(run_command(ctl("--json " + args) + " 2>/dev/null", &out), expect) << args << ": " << out;
    nlohmann::json j;
    for (size_t at = 0, end; at < out.size(); at = end + 1) {  // one document a line
      end = out.find('\n', at);
      if (end == std::string::npos) end = out.size();
      if (end > at) j.push_back(nlohmann::json::parse(out.substr(at, end - at)));
    }
    expect_snake_case(j, args);
    return j;
  };
  json_of("submit -F " + file);
  ready.wait_line();
  EXPECT_EQ(json_of("status j")[0]["state"], "running");
  json_of("list");
  json_of("logs j");
  json_of("stop j");
  json_of("wait j", 11);
  json_of("events j");
  json_of("submit --wait -- true");
  json_of("delete j --yes");
}

// repvisorctl on a pseudo-terminal of `rows` x `cols`: its pid; *master reads what it shows.
static pid_t on_terminal(const std::vector<std::string>& args, unsigned short rows, unsigned short cols, int* master) {
  winsize ws{rows, cols, 0, 0};
  const pid_t pid = forkpty(master, nullptr, nullptr, &ws);
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(REPVISORCTL_PATH)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    unsetenv("NO_COLOR");
    execv(REPVISORCTL_PATH, argv.data());
    _exit(127);
  }
  return pid;
}

// Reads until `done(all)` holds or the output ends; false at the deadline.
static bool read_until(int fd, std::string* all, const std::function<bool(const std::string&)>& done) {
  while (!done(*all)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)) != 1) return false;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return done(*all);
    all->append(buf, static_cast<size_t>(n));
  }
  return true;
}

TEST(CtlWatch, TheTableFitsTheTerminal) {
  Daemon daemon("max_concurrent_jobs = 1");
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  bus.submit_ok(polite(ready), {{"name", std::string("the-running-job-with-a-long-name")}});
  ready.wait_line();
  for (int i = 0; i < 10; ++i)
    bus.submit_ok({"true"}, {{"name", "a-queued-job-with-a-long-name-" + std::to_string(i)}});
  int master = -1;
  const pid_t pid = on_terminal({"--runtime-dir", daemon.runtime_dir, "watch"}, 8, 50, &master);
  ASSERT_GT(pid, 0);
  std::string all;
  EXPECT_TRUE(read_until(master, &all, [](const std::string& s) { return s.find("+8 more") != std::string::npos; }))
      << all;
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << status;
  // The last frame, drawn from the top: 8 rows less the last, none wider than 50 columns.
  const std::string frame = all.substr(all.rfind("\x1b[H") + 3);
  const std::string plain =
      std::regex_replace(frame.substr(0, frame.find("+8 more") + 7), std::regex("\x1b\\[[0-9;]*[A-Za-z]"), "");
  std::vector<std::string> lines;
  for (size_t at = 0, end; at <= plain.size(); at = end + 2) {
    end = plain.find("\r\n", at);
    if (end == std::string::npos) end = plain.size();
    lines.push_back(plain.substr(at, end - at));
  }
  EXPECT_EQ(lines.size(), 7u) << plain;
  for (const auto& l : lines) {
    size_t cols = 0;
    for (unsigned char c : l) cols += (c & 0xC0) != 0x80;
    EXPECT_LE(cols, 50u) << "'" << l << "'";
  }
  EXPECT_EQ(lines.back(), "+8 more");
}

TEST_F(CtlTest, JsonWatchOnATerminalPrintsJsonLines) {
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  int master = -1;
  const pid_t pid = on_terminal({"--runtime-dir", daemon.runtime_dir, "--json", "watch", id}, 24, 80, &master);
  ASSERT_GT(pid, 0);
  std::string all;
  read_until(master, &all, [](const std::string&) { return false; });  // to its end
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(all.find("\x1b["), std::string::npos) << "a table: " << all;
  ASSERT_FALSE(all.empty());
  const auto j = nlohmann::json::parse(all.substr(0, all.find('\n')));
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["state"], "completed");
}

TEST_F(CtlTest, StatusOfAStoppingJobCountsDownToSigkill) {
  ReadyFifo ready(daemon.dir);
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok(stubborn(ready));
  ready.wait_line();
  ASSERT_TRUE(bus.stop(id, {{"wait", false}, {"timeout_usec", uint64_t{90'000'000}}}).ok);
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "StopDeadlineUSec") != 0; });
  EXPECT_EQ(bus.prop_t(id, "StopDeadlineUSec"), bus.prop_t(id, "StopRequestedUSec") + 90'000'000);
  ASSERT_EQ(run_command(ctl("status " + id), &out), 0) << out;
  EXPECT_NE(out.find("Stop signal: SIGTERM sent "), std::string::npos) << out;
  EXPECT_NE(out.find("; timeout 1min 30s; SIGKILL in 1min "), std::string::npos) << out;
  // Past the stop signal's time the deadline is gone.
  ASSERT_TRUE(bus.stop(id, {{"force", true}, {"wait", true}}).ok);
  EXPECT_EQ(bus.prop_t(id, "StopDeadlineUSec"), 0u);
  ASSERT_EQ(run_command(ctl("status " + id), &out), 0) << out;
  EXPECT_EQ(out.find("Stop signal:"), std::string::npos) << out;
}

// A filter that matched nothing says so; a 64-character name keeps the columns in line.
TEST_F(CtlTest, ListSaysWhatMatchedNothingAndFitsLongNames) {
  EXPECT_EQ(run_command(ctl("list --state stopping --state cancelled"), &out), 0) << out;
  EXPECT_NE(out.find("No jobs in state stopping, cancelled."), std::string::npos) << out;
  Bus bus(daemon.address());
  const std::string long_name(64, 'n');
  const std::string a = bus.submit_ok({"true"}, {{"name", long_name}});
  const std::string b = bus.submit_ok({"true"}, {{"name", std::string("short")}});
  bus.wait_terminal(a);
  bus.wait_terminal(b);
  ASSERT_EQ(run_command(ctl("list"), &out), 0) << out;
  std::istringstream lines(out);
  std::string header, row_a, row_b;
  std::getline(lines, header);
  std::getline(lines, row_a);
  std::getline(lines, row_b);
  // NO_COLOR is not needed: output to a pipe is never coloured.
  const size_t state_at = header.find("STATE");
  ASSERT_NE(state_at, std::string::npos) << out;
  EXPECT_EQ(row_a.find("completed"), state_at) << out;
  EXPECT_EQ(row_b.find("completed"), state_at) << out;
  EXPECT_NE(row_a.find(long_name), std::string::npos) << out;
}

// Ctrl-C while `stop` waits ends the waiting, not the stop: it says so and exits 130.
TEST_F(CtlTest, CtrlCDuringStopSaysTheStopCarriesOn) {
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  const std::string id = bus.submit_ok(stubborn(ready));
  ready.wait_line();
  int out_pipe[2];
  ASSERT_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
  const pid_t child = fork();
  if (child == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(out_pipe[1], STDERR_FILENO);
    execl(REPVISORCTL_PATH, "repvisorctl", "--runtime-dir", daemon.runtime_dir.c_str(), "stop", id.c_str(), "--timeout",
          "60s", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  bus.wait_state(id, "stopping");
  ASSERT_EQ(kill(child, SIGINT), 0);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out_pipe[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(out_pipe[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 130) << text;
  EXPECT_NE(text.find("the stop of job " + id + " carries on in the daemon"), std::string::npos) << text;
  EXPECT_EQ(bus.prop_s(id, "State"), "stopping");
  ASSERT_TRUE(bus.stop(id, {{"force", true}, {"wait", true}}).ok);
}

// Bash completion offers job ids and names from `list --json`, of the daemon the command line
// names (--runtime-dir here), not of the default one.
TEST_F(CtlTest, BashCompletionOffersJobsOfTheDaemonTheCommandLineNames) {
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"true"}, {{"name", std::string("disk0-copy")}});
  bus.wait_terminal(id);
  const std::string bin = std::filesystem::path(REPVISORCTL_PATH).parent_path();
  const std::string script = "PATH=" + bin + ":$PATH; source " SOURCE_DIR "/packaging/completion/repvisorctl; " +
                             "COMP_WORDS=(repvisorctl --runtime-dir " + daemon.runtime_dir +
                             " status ''); COMP_CWORD=4; _repvisorctl; printf '%s\\n' \"${COMPREPLY[@]}\"";
  ASSERT_EQ(run_command("bash -c \"" + std::regex_replace(script, std::regex("([\"$`\\\\])"), "\\$1") + "\"", &out), 0)
      << out;
  EXPECT_NE(out.find(id + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find("disk0-copy\n"), std::string::npos) << out;
}

// Not on a terminal, `watch` prints a line per change that names the job, and says when a job
// is added and when it is removed.
TEST_F(CtlTest, WatchToAPipeNamesTheJobAndReportsAddedAndRemoved) {
  Bus bus(daemon.address());
  const std::string first = bus.submit_ok({"true"}, {{"name", std::string("w0")}});
  bus.wait_terminal(first);
  int out_pipe[2];
  ASSERT_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
  const pid_t child = fork();
  if (child == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    execl(REPVISORCTL_PATH, "repvisorctl", "--runtime-dir", daemon.runtime_dir.c_str(), "watch",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  FILE* in = fdopen(out_pipe[0], "r");
  ASSERT_NE(in, nullptr);
  // Reads lines until one holds `what`; all of them, for the failure message.
  std::string seen;
  auto until = [&](const std::string& what) {
    char line[4096];
    while (fgets(line, sizeof line, in)) {
      seen += line;
      if (std::string(line).find(what) != std::string::npos) return true;
    }
    return false;
  };
  // The watcher subscribes, then lists: once it has shown the job it found, it hears every new one.
  ASSERT_TRUE(until(first.substr(0, 12) + " w0: listed (completed)")) << seen;
  const std::string id = bus.submit_ok({"true"}, {{"name", std::string("w1")}});
  bus.wait_terminal(id);
  ASSERT_TRUE(until(id.substr(0, 12) + " w1: added")) << seen;
  ASSERT_TRUE(bus.remove(id, {}).ok);
  ASSERT_TRUE(until(id.substr(0, 12) + " w1: removed")) << seen;
  kill(child, SIGTERM);
  fclose(in);
  waitpid(child, nullptr, 0);
}

// A job whose main process ended while the daemon was down, its leftovers still running: how it
// ended cannot be known. status says so, and wait exits 12, not 10 ("failed") or 0.
TEST(CtlResult, AnEndNothingCanTellIsUnknownToStatusAndWait) {
  Daemon daemon("recovery = \"adopt\"");
  const auto ctl = [&](const std::string& args) {
    return std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " " + args;
  };
  std::string id;
  pid_t main_pid = 0;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    // A leftover that outlives the main process keeps the job's cgroup populated.
    id = bus.submit_ok({"sh", "-c", "sleep 1000 & echo ready > " + ready.path() + "; exec sleep 1000"});
    ready.wait_line();
    ASSERT_EQ(bus.prop_s(id, "State"), "running");
    main_pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
  }
  kill(daemon.pid, SIGKILL);
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  // The main process ends while no daemon watches it; its parent, gone too, never tells anyone.
  const int pidfd = pidfd_of(main_pid);
  ASSERT_GE(pidfd, 0);
  ASSERT_EQ(kill(main_pid, SIGKILL), 0);
  // Gone for good once reaped (by init, its parent now): the pidfd then reports POLLHUP, which
  // poll() waits for with no other event asked.
  pollfd p{pidfd, 0, 0};
  ASSERT_EQ(poll(&p, 1, 30'000), 1) << "the killed main process was never reaped by init";
  close(pidfd);
  daemon.start();
  std::string out;
  EXPECT_EQ(run_command(ctl("wait " + id), &out), 12) << out;
  ASSERT_EQ(run_command(ctl("status " + id), &out), 0) << out;
  EXPECT_NE(out.find("Result: unknown"), std::string::npos) << out;
  EXPECT_NE(out.find("State: failed"), std::string::npos) << out;
}

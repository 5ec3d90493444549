// The Debian package, built by CPack from this build tree, unpacked into a scratch root with
// dpkg -x: every file where Debian expects it, the metadata right, and the installed daemon
// accepting the installed configuration.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

TEST(Package, DebInstallsEveryFileAndItsDaemonRuns) {
  const std::string out_dir = temp_dir();
  std::string out;
  ASSERT_EQ(run_command("cd " BINARY_DIR " && cpack -G DEB -B " + out_dir + " 2>&1", &out), 0) << out;
  std::string deb;
  for (const auto& e : fs::directory_iterator(out_dir))
    if (e.path().extension() == ".deb") deb = e.path();
  ASSERT_FALSE(deb.empty()) << out;

  ASSERT_EQ(run_command("dpkg-deb -I " + deb, &out), 0) << out;
  EXPECT_NE(out.find("Package: repvisor"), std::string::npos) << out;
  EXPECT_NE(out.find("qemu-utils, nbdkit, libnbd-bin"), std::string::npos) << out;
  EXPECT_NE(out.find("libuv1"), std::string::npos) << "shared-library dependencies computed: " << out;
  EXPECT_NE(out.find("conffiles"), std::string::npos) << out;
  EXPECT_NE(out.find("postinst"), std::string::npos) << out;

  const std::string root = out_dir + "/root";
  ASSERT_EQ(run_command("dpkg -x " + deb + " " + root, &out), 0) << out;
  for (const char* f :
       {"/usr/sbin/repvisord", "/usr/bin/repvisorctl", "/usr/bin/repvisor-copy",
        "/usr/lib/systemd/system/repvisord.service", "/usr/share/dbus-1/system.d/org.repvisor1.conf",
        "/usr/lib/tmpfiles.d/repvisor.conf", "/usr/lib/sysusers.d/repvisor.conf", "/etc/repvisor/repvisord.toml",
        "/usr/share/dbus-1/interfaces/org.repvisor1.xml", "/usr/share/man/man8/repvisord.8",
        "/usr/share/man/man1/repvisorctl.1", "/usr/share/man/man5/repvisord.toml.5",
        "/usr/share/bash-completion/completions/repvisorctl", "/usr/share/doc/repvisor/nbdcopy.toml"})
    EXPECT_TRUE(fs::exists(root + f)) << f;
  struct stat st {};
  ASSERT_EQ(stat((root + "/usr/sbin/repvisord").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);

  // The installed daemon reads the installed configuration.
  ASSERT_EQ(
      run_command(root + "/usr/sbin/repvisord --check-config --config " + root + "/etc/repvisor/repvisord.toml", &out),
      0)
      << out;
  EXPECT_NE(out.find("admin_group = 'repvisor'"), std::string::npos) << out;
  // The man pages format without warnings; the completion loads and registers itself.
  for (const char* page : {"/usr/share/man/man8/repvisord.8", "/usr/share/man/man1/repvisorctl.1",
                           "/usr/share/man/man5/repvisord.toml.5"}) {
    EXPECT_EQ(run_command("LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l " + root + page + " 2>&1 >/dev/null", &out), 0)
        << page << ": " << out;
    EXPECT_EQ(out, "") << page;
  }
  ASSERT_EQ(run_command("bash -c 'source " + root +
                            "/usr/share/bash-completion/completions/repvisorctl && complete -p repvisorctl'",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("-F _repvisorctl"), std::string::npos) << out;
  fs::remove_all(out_dir);
}

// Holder rule arguments and the command runner's errors (no root needed;
// installing real rules is covered by packet_holder_test).
#include "agent/holder_rules.h"

#include <gtest/gtest.h>

#include "agent/holder_command.h"

namespace tideway::agent {
namespace {

TEST(HolderRules, InterfaceNames) {
  EXPECT_TRUE(valid_interface_name("veth0"));
  EXPECT_TRUE(valid_interface_name("a.b-c_d"));
  EXPECT_TRUE(valid_interface_name("123456789012345"));
  EXPECT_FALSE(valid_interface_name("1234567890123456"));  // 16: too long
  EXPECT_FALSE(valid_interface_name(""));
  EXPECT_FALSE(valid_interface_name("eth0 -j ACCEPT"));
  EXPECT_FALSE(valid_interface_name("eth0;rm"));
  EXPECT_FALSE(valid_interface_name("eth+"));  // iptables wildcard: not a name
  EXPECT_FALSE(valid_interface_name("eth/0"));
  EXPECT_FALSE(valid_interface_name(".."));
}

TEST(HolderRules, ArgvHasNoBypassAndUsesTheQueue) {
  HolderRule r{"app0", "", 7, ""};
  auto argv = holder_rule_argv(r, "-A");
  ASSERT_TRUE(argv) << argv.error().detail;
  std::vector<std::string> want = {"iptables", "-w", "10", "-A", "FORWARD", "-i", "app0",
                                   "-j", "NFQUEUE", "--queue-num", "7"};
  EXPECT_EQ(*argv, want);
  for (const auto& a : *argv) EXPECT_EQ(a.find("bypass"), std::string::npos);
}

TEST(HolderRules, ArgvWithOutputInterfaceAndNetns) {
  HolderRule r{"app0", "cli0", 3, "site-a"};
  auto argv = holder_rule_argv(r, "-C");
  ASSERT_TRUE(argv) << argv.error().detail;
  std::vector<std::string> want = {"ip", "netns", "exec", "site-a", "iptables", "-w", "10", "-C",
                                   "FORWARD", "-i", "app0", "-o", "cli0", "-j", "NFQUEUE",
                                   "--queue-num", "3"};
  EXPECT_EQ(*argv, want);
}

TEST(HolderRules, BadNamesAreRefusedWithTheName) {
  auto a = install_holder_rule(HolderRule{"bad name", "", 0, ""});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, proto::Errc::kInvalid);
  EXPECT_NE(a.error().detail.find("bad name"), std::string::npos);
  EXPECT_FALSE(install_holder_rule(HolderRule{"ok0", "x;y", 0, ""}));
  EXPECT_FALSE(remove_holder_rule(HolderRule{"ok0", "", 0, "../etc"}));
}

TEST(HolderCommand, MissingProgramSaysNotFound) {
  std::vector<std::string> argv = {"tideway-no-such-program-xyz", "-h"};
  CommandResult r = run_command(argv);
  EXPECT_FALSE(r.started());
  EXPECT_NE(r.describe(argv).find("not found in PATH"), std::string::npos) << r.describe(argv);
  EXPECT_FALSE(find_in_path("tideway-no-such-program-xyz"));
  EXPECT_TRUE(find_in_path("sh"));
}

TEST(HolderCommand, ExitCodeAndOutputAreReported) {
  std::vector<std::string> argv = {"sh", "-c", "echo oops >&2; exit 3"};
  CommandResult r = run_command(argv);
  ASSERT_TRUE(r.started());
  EXPECT_TRUE(r.exited(3));
  EXPECT_EQ(r.describe(argv), "sh -c echo oops >&2; exit 3: exit 3: oops");
}

}  // namespace
}  // namespace tideway::agent

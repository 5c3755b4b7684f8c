// crypttab-syntax parsing for `cryptmap tab-open` (cli/apps/cryptmaptab.h).
#include "cli/apps/cryptmaptab.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace cryptmap::cli::apps {
namespace {

using Args = std::vector<std::string>;

TEST(Cryptmaptab, ParsesEntriesCommentsAndOptions) {
  const std::string text =
      "# name image keyfile options\n"
      "\n"
      "home   /srv/home.img   /etc/keys/home   luks,readonly,header=/srv/home.hdr  # trailing\n"
      "swap\t/srv/"
      "swap.img\tnone\tplain,cipher=aes-xts-plain64,size=512,hash=sha256,offset=8,noauto\n"
      "data /srv/data.img\n"
      "opt /srv/opt.img - nofail,discard,x-systemd.device-timeout=10,key-slot=3,keyfile-size=32\n";
  std::vector<TabEntry> e;
  std::string err;
  ASSERT_TRUE(parse_cryptmaptab(text, e, err)) << err;
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].name, "home");
  EXPECT_EQ(e[0].line, 3);
  EXPECT_EQ(e[0].image, "/srv/home.img");
  EXPECT_EQ(e[0].key_file, "/etc/keys/home");
  EXPECT_EQ(e[0].open_args, (Args{"--type", "luks", "--key-file", "/etc/keys/home", "--readonly",
                                  "--header", "/srv/home.hdr"}));
  EXPECT_TRUE(e[1].noauto);
  EXPECT_EQ(e[1].key_file, "");
  EXPECT_EQ(e[1].open_args, (Args{"--type", "plain", "--cipher", "aes-xts-plain64", "--key-size",
                                  "512", "--hash", "sha256", "--offset", "8"}));
  EXPECT_EQ(e[2].open_args, (Args{"--type", "luks"}));
  EXPECT_FALSE(e[2].noauto);
  EXPECT_TRUE(e[3].nofail);
  EXPECT_TRUE(e[3].discard);
  EXPECT_FALSE(e[0].discard);
  EXPECT_EQ(e[3].open_args, (Args{"--type", "luks", "--key-slot", "3", "--keyfile-size", "32"}));
}

TEST(Cryptmaptab, ReadOnlySpellingsKeyFileWindowAndLastTypeWins) {
  const std::string text =
      "a /a.img /k read-only,keyfile-offset=16,keyfile-size=32\n"
      "b /b.img /k plain,luks,readonly\n";
  std::vector<TabEntry> e;
  std::string err;
  ASSERT_TRUE(parse_cryptmaptab(text, e, err)) << err;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].open_args, (Args{"--type", "luks", "--key-file", "/k", "--readonly",
                                  "--keyfile-offset", "16", "--keyfile-size", "32"}));
  EXPECT_EQ(e[1].open_args, (Args{"--type", "luks", "--key-file", "/k", "--readonly"}));
}

TEST(Cryptmaptab, PerformanceFlagsBitlkAndTrueCryptAsCrypttabHasThem) {
  const std::string text =
      "p /p.img /k luks,no-read-workqueue,no-write-workqueue,same-cpu-crypt,"
      "submit-from-crypt-cpus\n"
      "b /b.img /k bitlk,read-only\n"
      "t /t.img /pw tcrypt\n"
      "h /h.img /pw tcrypt-hidden,tcrypt-keyfile=/k1,tcrypt-keyfile=/k2\n"
      "v /v.img - tcrypt-veracrypt,veracrypt-pim=7,tcrypt-system\n"
      "z /z.img /pw tcrypt-veracrypt,veracrypt-pim=0\n";
  std::vector<TabEntry> e;
  std::string err;
  ASSERT_TRUE(parse_cryptmaptab(text, e, err)) << err;
  ASSERT_EQ(e.size(), 6u);
  EXPECT_EQ(e[0].open_args, (Args{"--type", "luks", "--key-file", "/k", "--perf-no_read_workqueue",
                                  "--perf-no_write_workqueue", "--perf-same_cpu_crypt",
                                  "--perf-submit_from_crypt_cpus"}));
  EXPECT_EQ(e[0].passphrase_file, "");
  EXPECT_EQ(e[1].open_args, (Args{"--type", "bitlk", "--key-file", "/k", "--readonly"}));
  // TrueCrypt: the KEYFILE field is the passphrase, fed on stdin, never a --key-file (which
  // would be a TrueCrypt keyfile); TrueCrypt headers only unless tcrypt-veracrypt.
  EXPECT_EQ(e[2].open_args, (Args{"--type", "tcrypt", "--disable-veracrypt"}));
  EXPECT_EQ(e[2].passphrase_file, "/pw");
  EXPECT_EQ(e[3].open_args, (Args{"--type", "tcrypt", "--key-file", "/k1", "--key-file", "/k2",
                                  "--disable-veracrypt", "--tcrypt-hidden"}));
  EXPECT_EQ(e[4].open_args, (Args{"--type", "tcrypt", "--veracrypt-pim", "7", "--tcrypt-system"}));
  EXPECT_EQ(e[4].passphrase_file, "");
  EXPECT_EQ(e[5].open_args, (Args{"--type", "tcrypt"})) << "PIM 0 is VeraCrypt's default";
}

// The shipped example must stay a valid table that means what its comments say.
TEST(Cryptmaptab, ExampleFileParses) {
  std::ifstream in(CRYPTMAP_EXAMPLE_TAB);
  ASSERT_TRUE(in) << CRYPTMAP_EXAMPLE_TAB;
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<TabEntry> e;
  std::string err;
  ASSERT_TRUE(parse_cryptmaptab(ss.str(), e, err)) << err;
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[1].name, "archive");
  EXPECT_EQ(e[1].open_args, (Args{"--type", "luks", "--key-file", "/etc/cryptmap/keys.bin",
                                  "--readonly", "--header", "/srv/images/archive.hdr",
                                  "--keyfile-offset", "64", "--keyfile-size", "64"}));
  EXPECT_TRUE(e[2].noauto);
  EXPECT_TRUE(e[3].nofail && e[3].discard);
}

TEST(Cryptmaptab, RefusesBadLinesNamingThem) {
  const std::pair<const char*, const char*> cases[] = {
      {"a\n", "line 1: expected"},
      {"# c\na /x.img k luks extra\n", "line 2: too many fields"},
      {"a UUID=1234 k\n", "line 1: 'UUID=1234'"},
      {"a rel.img k\n", "must be an absolute path"},
      {"a /x k\na /y k\n", "line 2: volume name 'a' appears twice"},
      {"a/b /x k\n", "invalid volume name"},
      {"a /x k luks,bogus\n", "unsupported option 'bogus'"},
      {"a /x k key-slot=x\n", "needs a number"},
      {"a /x k cipher=aes-cbc-essiv:sha256\n", "is for plain mode"},
      {"a /x k luks,,readonly\n", "empty option"},
      {"a /x k header=\n", "needs a value"},
      {"a /x k tcrypt,veracrypt-pim=5\n", "needs 'tcrypt-veracrypt'"},
      {"a /x k tcrypt-veracrypt,veracrypt-pim=2147469\n", "from 0 to 2147468"},
      {"a /x k tcrypt-keyfile=rel\n", "needs an absolute path"},
      {"a /x k bitlk,hash=sha256\n", "is for plain mode"},
  };
  for (const auto& [text, want] : cases) {
    std::vector<TabEntry> e{TabEntry{}};
    std::string err;
    EXPECT_FALSE(parse_cryptmaptab(text, e, err)) << text;
    EXPECT_NE(err.find(want), std::string::npos) << text << " -> " << err;
    EXPECT_EQ(e.size(), 1u) << "output must be untouched on error";
  }
}

TEST(Cryptmaptab, EmptyTableIsFine) {
  std::vector<TabEntry> e;
  std::string err;
  EXPECT_TRUE(parse_cryptmaptab("# nothing\n\n   \n", e, err));
  EXPECT_TRUE(e.empty());
}

}  // namespace
}  // namespace cryptmap::cli::apps

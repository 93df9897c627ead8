// The offline scan (library and tool) on synthetic images whose zero pages
// and duplicates are known.
#include "wan/codec/cbr_scan.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/codec/codec_test_util.h"
#include "wan/codec/cbr_scan_json.h"

namespace tideway::wan::codec {
namespace {

using namespace testing;
namespace fs = std::filesystem;

// 100 pages: 10 zero, 70 random, 20 repeats of earlier random pages.
std::vector<uint8_t> make_image(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Page> pages;
  for (int i = 0; i < 100; ++i) {
    if (i % 10 == 5) {
      pages.push_back(zero_page());
    } else if (i % 5 == 3 && i > 10) {
      pages.push_back(pages[static_cast<size_t>(rng() % 5)]);  // repeat of pages 0-4 (all random)
    } else {
      pages.push_back(random_page(rng));
    }
  }
  std::vector<uint8_t> image;
  for (const auto& p : pages) image.insert(image.end(), p.begin(), p.end());
  return image;
}

struct TempFile {
  fs::path path;
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    path = fs::temp_directory_path() / ("tw-cbr-scan-" + std::to_string(::getpid()) + ".img");
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                 static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { fs::remove(path); }
};

TEST(CbrScan, CountsZeroPagesAndDuplicates) {
  const auto image = make_image(1);
  ScanOptions o;
  o.cache_bytes = {1 << 20};
  auto r = scan_bytes(image, "synthetic", o);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->pages, 100u);
  EXPECT_EQ(r->zero_pages, 10u);
  EXPECT_EQ(r->tail_bytes, 0u);
  ASSERT_EQ(r->rows.size(), 4u);  // 1, 2, 4, 8 sub-blocks
  for (const auto& row : r->rows) {
    SCOPED_TRACE(row.sub_blocks);
    // 18 repeated pages (i % 5 == 3, i > 10, not i % 10 == 5): every sub-block hits.
    EXPECT_EQ(row.stats.sub_hit, 18u * row.sub_blocks);
    EXPECT_EQ(row.duplicate_bytes(), 18u * kPageSize);
    EXPECT_EQ(row.stats.page_bytes, image.size());
    EXPECT_LT(row.stats.wire_bytes, 73u * kPageSize);
  }
}

TEST(CbrScan, SmallCacheFindsLess) {
  const auto image = make_image(2);
  ScanOptions o;
  o.sub_blocks = {4};
  o.cache_bytes = {8 * kPageSize, 1 << 20};
  auto r = scan_bytes(image, "synthetic", o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows.size(), 2u);
  EXPECT_LT(r->rows[0].stats.sub_hit, r->rows[1].stats.sub_hit);
  EXPECT_GT(r->rows[0].stats.wire_bytes, r->rows[1].stats.wire_bytes);
}

TEST(CbrScan, FileMatchesBytesAndPartialLastPageIsPadded) {
  auto image = make_image(3);
  image.resize(image.size() - 1000);
  TempFile f(image);
  ScanOptions o;
  o.cache_bytes = {1 << 20};
  o.sub_blocks = {4};
  uint64_t last_done = 0;
  o.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, image.size());
    last_done = done;
  };
  auto from_file = scan_image(f.path.string(), o);
  ASSERT_TRUE(from_file.ok()) << from_file.error().detail;
  EXPECT_EQ(last_done, image.size());
  EXPECT_EQ(from_file->tail_bytes, kPageSize - 1000);
  EXPECT_EQ(from_file->pages, 100u);
  auto from_bytes = scan_bytes(image, "x", o);
  ASSERT_TRUE(from_bytes.ok());
  EXPECT_EQ(from_file->rows[0].stats.wire_bytes, from_bytes->rows[0].stats.wire_bytes);
  const auto j = to_json(*from_file);
  EXPECT_EQ(j["zero_pages"], 10);
  EXPECT_EQ(j["rows"][0]["sub_blocks"], 4);
  EXPECT_EQ(j["rows"][0]["bytes_out"], from_file->rows[0].stats.wire_bytes);
  EXPECT_NE(format_report(*from_file).find("zero (10.0%)"), std::string::npos);
}

TEST(CbrScan, ClearErrors) {
  auto missing = scan_image("/nonexistent/disk.img");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, proto::Errc::kSystem);
  EXPECT_NE(missing.error().detail.find("cannot open /nonexistent/disk.img: No such file"), std::string::npos);
  auto dir = scan_image("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.error().detail.find("is a directory"), std::string::npos);
  ScanOptions none;
  none.cache_bytes.clear();
  EXPECT_FALSE(scan_bytes({}, "x", none).ok());
  auto empty = scan_bytes({}, "empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->pages, 0u);
}

// Runs the tool; returns its exit status and stdout+stderr.
std::pair<int, std::string> run_tool(const std::string& args) {
  const std::string cmd = std::string(TIDEWAY_CBR_SCAN_TOOL) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(CbrScanTool, ReportsJsonAndErrors) {
  TempFile f(make_image(4));
  auto [rc, out] = run_tool(f.path.string() + " --cache-mb 1 --sub-blocks 4 --json --quiet");
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["zero_pages"], 10);
  EXPECT_EQ(j["rows"][0]["duplicate_sub_blocks"], 18 * 4);
  auto [rc2, out2] = run_tool("/nonexistent/disk.img");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("/nonexistent/disk.img"), std::string::npos) << out2;
  auto [rc3, out3] = run_tool(f.path.string() + " --sub-blocks 3");
  EXPECT_NE(rc3, 0);
  auto [rc4, out4] = run_tool(f.path.string() + " --cache-mb 1");
  ASSERT_EQ(rc4, 0) << out4;
  EXPECT_NE(out4.find("sub-blocks"), std::string::npos) << out4;
  EXPECT_NE(out4.find("scanned"), std::string::npos) << out4;  // progress on stderr
}

}  // namespace
}  // namespace tideway::wan::codec

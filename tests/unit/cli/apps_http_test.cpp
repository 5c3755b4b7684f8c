// The strict HTTP/1.1 parser behind the Docker volume plugin (cli/apps/http.h): whole requests,
// requests split at every byte, and each kind of malformed input with its status code.
#include "cli/apps/http.h"

#include <gtest/gtest.h>

#include <string>

namespace cryptmap::cli::apps {
namespace {

const std::string kCreate =
    "POST /VolumeDriver.Create HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n"
    "Content-Length: 30\r\n\r\n{\"Name\":\"v1\",\"Opts\":{\"a\":\"\n\"}}";

TEST(HttpParser, ParsesAWholeRequest) {
  HttpRequestParser p;
  ASSERT_EQ(p.feed(kCreate), HttpParse::kComplete) << p.error();
  EXPECT_EQ(p.request().method, "POST");
  EXPECT_EQ(p.request().target, "/VolumeDriver.Create");
  EXPECT_EQ(p.request().version, "HTTP/1.1");
  ASSERT_NE(p.request().header("content-type"), nullptr);
  EXPECT_EQ(*p.request().header("content-type"), "application/json");
  EXPECT_EQ(p.request().body, "{\"Name\":\"v1\",\"Opts\":{\"a\":\"\n\"}}");
}

TEST(HttpParser, SameResultWhenFedOneByteAtATime) {
  for (std::size_t split = 0; split <= kCreate.size(); ++split) {
    HttpRequestParser p;
    HttpParse st = p.feed(kCreate.substr(0, split));
    if (split < kCreate.size()) {
      ASSERT_EQ(st, HttpParse::kIncomplete) << "split " << split << ": " << p.error();
      st = p.feed(kCreate.substr(split));
    }
    ASSERT_EQ(st, HttpParse::kComplete) << "split " << split;
    EXPECT_EQ(p.request().body.size(), 30u);
  }
  HttpRequestParser p;
  HttpParse st = HttpParse::kIncomplete;
  for (char c : kCreate) st = p.feed(std::string(1, c));
  EXPECT_EQ(st, HttpParse::kComplete);
}

TEST(HttpParser, NoBodyWithoutContentLength) {
  HttpRequestParser p;
  ASSERT_EQ(p.feed("POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n\r\n"), HttpParse::kComplete);
  EXPECT_EQ(p.request().body, "");
}

TEST(HttpParser, WaitsForTheWholeBody) {
  HttpRequestParser p;
  EXPECT_EQ(p.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabc"),
            HttpParse::kIncomplete);
  EXPECT_EQ(p.feed("de"), HttpParse::kComplete);
  EXPECT_EQ(p.request().body, "abcde");
}

struct BadCase {
  const char* what;
  std::string input;
  int status;
};

TEST(HttpParser, RefusesMalformedRequests) {
  const BadCase cases[] = {
      {"bare LF", "POST / HTTP/1.1\nHost: x\n\n", 400},
      {"missing version", "POST /\r\nHost: x\r\n\r\n", 400},
      {"extra space", "POST  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"relative target", "POST x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"bad method", "PO(ST / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"HTTP/2", "POST / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"not HTTP", "POST / FTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"no Host", "POST / HTTP/1.1\r\n\r\n", 400},
      {"no colon", "POST / HTTP/1.1\r\nHost x\r\n\r\n", 400},
      {"space in name", "POST / HTTP/1.1\r\nHo st: x\r\n\r\n", 400},
      {"folding", "POST / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n", 400},
      {"negative length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
      {"hex length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400},
      {"huge length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
       400},
      {"conflicting lengths",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
      {"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413},
      {"NUL", std::string("POST / HTTP/1.1\r\nHost: x\0\r\n\r\n", 30), 400},
      {"control in value", "POST / HTTP/1.1\r\nHost: x\x01y\r\n\r\n", 400},
  };
  for (const auto& c : cases) {
    HttpRequestParser p;
    EXPECT_EQ(p.feed(c.input), HttpParse::kBad) << c.what;
    EXPECT_EQ(p.error_status(), c.status) << c.what << ": " << p.error();
    EXPECT_FALSE(p.error().empty()) << c.what;
    EXPECT_EQ(p.feed("more"), HttpParse::kBad) << c.what << ": state must stick";
  }
}

TEST(HttpParser, BoundsTheHead) {
  HttpLimits lim;
  lim.max_header_bytes = 64;
  HttpRequestParser p(lim);
  EXPECT_EQ(p.feed("POST / HTTP/1.1\r\nHost: x\r\nX: " + std::string(100, 'a')), HttpParse::kBad);
  EXPECT_EQ(p.error_status(), 431);

  HttpLimits few;
  few.max_headers = 2;
  HttpRequestParser q(few);
  EXPECT_EQ(q.feed("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"), HttpParse::kBad);
  EXPECT_EQ(q.error_status(), 431);
}

TEST(HttpParser, ResponseHasLengthAndClose) {
  std::string r = http_response(200, "application/vnd.docker.plugins.v1+json", "{}");
  EXPECT_EQ(r,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
}

}  // namespace
}  // namespace cryptmap::cli::apps

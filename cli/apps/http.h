// A small, strict HTTP/1.1 request parser and response writer for local control sockets (the
// Docker volume plugin speaks HTTP/1.1 over a unix socket). Only what such clients send is
// accepted: a request line `METHOD SP target SP HTTP/1.x`, CRLF-terminated header lines
// `name: value` (token names, no line folding), and a body given by Content-Length (at most one
// value). Transfer-Encoding (chunked bodies) is refused with 501; anything malformed with 400;
// header sections over the limit with 431; bodies over the limit with 413.
//
// Ownership: the parser owns a copy of the bytes fed so far. Thread-safety: one parser per
// connection, not shared.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cryptmap::cli::apps {

struct HttpRequest {
  std::string method;
  std::string target;
  std::string version;                                       // "HTTP/1.1" or "HTTP/1.0"
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;

  // The first header called `name` (lower case), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct HttpLimits {
  std::size_t max_header_bytes = 16 * 1024;  // request line + headers + blank line
  std::size_t max_headers = 64;
  std::size_t max_body_bytes = 1024 * 1024;
};

enum class HttpParse { kIncomplete, kComplete, kBad };

class HttpRequestParser {
 public:
  explicit HttpRequestParser(HttpLimits limits = {}) : limits_(limits) {}

  // Appends `data` and parses as far as possible. kComplete: request() is the whole request
  // (bytes after it are ignored: one request per connection). kBad: error_status() and error()
  // say why; feeding more changes nothing.
  HttpParse feed(std::string_view data);

  const HttpRequest& request() const { return req_; }
  int error_status() const { return status_; }
  const std::string& error() const { return error_; }

 private:
  HttpParse bad(int status, std::string why);
  HttpParse parse_head(std::string_view head);

  HttpLimits limits_;
  std::string buf_;
  HttpRequest req_;
  HttpParse state_ = HttpParse::kIncomplete;
  bool head_done_ = false;
  std::size_t body_start_ = 0;
  std::size_t content_length_ = 0;
  int status_ = 0;
  std::string error_;
};

// A complete HTTP/1.1 response with Content-Length and `Connection: close`.
std::string http_response(int status, std::string_view content_type, std::string_view body);

}  // namespace cryptmap::cli::apps

// Strict HTTP/1.1 request parsing (see http.h).
#include "cli/apps/http.h"

#include <cctype>

namespace cryptmap::cli::apps {
namespace {

bool is_tchar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

HttpParse HttpRequestParser::bad(int status, std::string why) {
  state_ = HttpParse::kBad;
  status_ = status;
  error_ = std::move(why);
  return state_;
}

HttpParse HttpRequestParser::parse_head(std::string_view head) {
  // head: everything before the blank line, lines separated by CRLF.
  std::size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
  for (char c : head) {
    if (c == '\0') return bad(400, "NUL byte in the request head");
  }
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return bad(400, "malformed request line");
  req_.method = std::string(line.substr(0, sp1));
  req_.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  req_.version = std::string(line.substr(sp2 + 1));
  if (!is_token(req_.method)) return bad(400, "malformed method");
  if (req_.target.empty() || req_.target.front() != '/')
    return bad(400, "target must start with '/'");
  for (char c : req_.target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad(400, "control byte in the target");
  if (req_.version.rfind("HTTP/", 0) != 0) return bad(400, "malformed HTTP version");
  if (req_.version != "HTTP/1.1" && req_.version != "HTTP/1.0")
    return bad(505, "only HTTP/1.0 and 1.1");

  bool have_length = false;
  while (!rest.empty()) {
    eol = rest.find("\r\n");
    line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    if (line.empty()) return bad(400, "empty header line");
    if (line.front() == ' ' || line.front() == '\t')
      return bad(400, "obsolete header line folding");
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return bad(400, "header line without ':'");
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return bad(400, "malformed header name");
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return bad(400, "control byte in a header value");
    if (req_.headers.size() >= limits_.max_headers) return bad(431, "too many header lines");
    req_.headers.emplace_back(lower(name), std::string(value));
    const std::string& key = req_.headers.back().first;
    if (key == "transfer-encoding")
      return bad(501, "Transfer-Encoding is not supported; send Content-Length");
    if (key == "content-length") {
      if (value.empty() || value.size() > 19) return bad(400, "malformed Content-Length");
      std::size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return bad(400, "malformed Content-Length");
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (have_length && n != content_length_) return bad(400, "conflicting Content-Length values");
      have_length = true;
      content_length_ = n;
    }
  }
  if (req_.version == "HTTP/1.1" && req_.header("host") == nullptr)
    return bad(400, "HTTP/1.1 request without Host");
  if (content_length_ > limits_.max_body_bytes) return bad(413, "request body too large");
  return HttpParse::kIncomplete;
}

HttpParse HttpRequestParser::feed(std::string_view data) {
  if (state_ != HttpParse::kIncomplete) return state_;
  buf_.append(data);
  if (!head_done_) {
    std::size_t end = buf_.find("\r\n\r\n");
    // Bare LF line ends are refused: look at every LF of the head seen so far.
    std::size_t head_len = end == std::string::npos ? buf_.size() : end + 4;
    for (std::size_t i = 0; i < head_len; ++i) {
      if (buf_[i] == '\n' && (i == 0 || buf_[i - 1] != '\r'))
        return bad(400, "bare LF line ending");
    }
    if (end == std::string::npos) {
      if (buf_.size() > limits_.max_header_bytes) return bad(431, "request head too large");
      return HttpParse::kIncomplete;
    }
    if (end + 4 > limits_.max_header_bytes) return bad(431, "request head too large");
    if (parse_head(std::string_view(buf_).substr(0, end)) == HttpParse::kBad) return state_;
    head_done_ = true;
    body_start_ = end + 4;
  }
  if (buf_.size() - body_start_ < content_length_) return HttpParse::kIncomplete;
  req_.body = buf_.substr(body_start_, content_length_);
  state_ = HttpParse::kComplete;
  return state_;
}

std::string http_response(int status, std::string_view content_type, std::string_view body) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  out += "Content-Type: " + std::string(content_type) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace cryptmap::cli::apps

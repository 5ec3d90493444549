#include "supervisor/log_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "supervisor/supervisor.hpp"
#include "sys/log_cut.hpp"
#include "util/fd.hpp"

namespace repvisor {

using config::LogKeep;

namespace {

std::string read_at(int fd, uint64_t offset, size_t len) {
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    const ssize_t n = pread(fd, buf.data() + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "reading the log");
    if (n == 0) break;  // shorter than its size said a moment ago: a truncation, read what is there
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

std::string read_file(const std::string& path) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd) return {};  // no index (yet): the read goes without times
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// The marker's bytes are the daemon's, not the job's.
uint64_t marker_bytes(const LogShape& s) {
  return (s.keep == LogKeep::Both && s.cut > 0) || (s.keep == LogKeep::Head && s.sealed) ? sys::kLogMarkerSize : 0;
}

}  // namespace

std::vector<LogPiece> log_pieces(const LogShape& s, uint64_t size) {
  std::vector<LogPiece> out;
  auto add = [&](uint64_t file_offset, uint64_t position, uint64_t length) {
    if (length > 0) out.push_back({file_offset, position, length});
  };
  if (s.cut == 0) {
    add(0, 0, size);
  } else if (s.keep == LogKeep::Tail) {
    add(0, s.cut, size);
  } else if (s.keep == LogKeep::Both) {
    // The head up to the marker, then the tail: its first byte is the first kept after the cut
    // (the cut counts the head's bytes the marker overwrote).
    const uint64_t head = std::min(size, s.marker_end > sys::kLogMarkerSize ? s.marker_end - sys::kLogMarkerSize : 0);
    add(0, 0, head);
    if (size > s.marker_end) add(s.marker_end, s.marker_end + s.cut - sys::kLogMarkerSize, size - s.marker_end);
  } else if (s.sealed) {
    add(0, 0, size > sys::kLogMarkerSize ? size - sys::kLogMarkerSize : 0);
  } else {
    // Head while the job runs: what its last cut left, then what the job wrote since, which the
    // next look cuts again if it is over the bound.
    const uint64_t head = std::min(size, s.head_end ? s.head_end : size);
    add(0, 0, head);
    add(head, head + s.cut, size - head);
  }
  return out;
}

LogRead read_log(int fd, const LogShape& shape, const std::vector<core::LogStamp>& stamps, const LogReadRequest& req) {
  struct stat st {};
  if (fstat(fd, &st) < 0) throw std::system_error(errno, std::generic_category(), "reading the log");
  const auto size = static_cast<uint64_t>(st.st_size);
  const uint64_t marker = std::min(size, marker_bytes(shape));
  LogRead out;
  out.cut = shape.cut;
  out.keep = shape.keep;
  out.end = shape.cut + size - marker;
  const auto pieces = log_pieces(shape, size);
  for (const auto& p : pieces) out.kept.push_back({p.position, p.position + p.length});

  uint64_t at = req.from_end ? (out.end > req.offset ? out.end - req.offset : 0) : req.offset;
  if (req.since) at = std::max(at, core::first_written_since(stamps, *req.since));
  // The piece that holds `at`, or the first after it when its byte was cut.
  const LogPiece* piece = nullptr;
  for (const auto& p : pieces) {
    if (at < p.position + p.length) {
      piece = &p;
      at = std::max(at, p.position);
      break;
    }
  }
  if (!piece) {
    out.start = out.end;  // everything from `at` on was cut (a sealed head), or is not written yet
    return out;
  }
  const uint64_t piece_end = piece->position + piece->length;
  auto file_at = [&](uint64_t position) { return piece->file_offset + (position - piece->position); };
  const auto want = static_cast<size_t>(std::min<uint64_t>(req.max_bytes, piece_end - at));
  std::string data = read_at(fd, file_at(at), want);
  if (req.whole_lines && !data.empty()) {
    // Within a line: its start was not read (or was cut); on from the next line's.
    const bool mid_line = at > 0 && (at == piece->position || read_at(fd, file_at(at) - 1, 1) != "\n");
    if (mid_line) {
      const size_t nl = data.find('\n');
      const size_t skip = nl == std::string::npos ? data.size() : nl + 1;
      data.erase(0, skip);
      at += skip;
    }
    const bool more_to_come = req.growing && at + data.size() >= piece_end && piece_end == out.end;
    const size_t last_nl = data.rfind('\n');
    if (last_nl != std::string::npos)
      data.resize(last_nl + 1);
    else if (more_to_come && data.size() < req.max_bytes)
      data.clear();  // a line not yet ended: read once it is
  }
  out.start = at;
  out.data = std::move(data);
  // The stamps that date the data: from the first past its first byte to the first past its last.
  const uint64_t last = out.start + out.data.size();
  auto it = std::upper_bound(stamps.begin(), stamps.end(), out.start,
                             [](uint64_t b, const core::LogStamp& s) { return b < s.written; });
  for (; it != stamps.end() && !out.data.empty(); ++it) {
    out.stamps.push_back(*it);
    if (it->written >= last) break;
  }
  return out;
}

// The supervisor's side: the job's file, its index and its shape as the log thread holds it.
LogRead Supervisor::read_log(const core::Job& job, const LogReadRequest& req) const {
  const std::string path = log_path(job);
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) return {};  // nothing written yet (a pending job)
    throw std::system_error(errno, std::generic_category(), "opening the log " + path);
  }
  // Read before the shape: a stamp the thread adds meanwhile is only missing, never wrong.
  const auto stamps = core::decode_log_index(read_file(core::log_index_path(path)));
  LogRead out;
  auto read = [&](LogShape shape) {
    // A head log cut before a restart: its last cut's size is the one the record has.
    if (shape.keep == LogKeep::Head && shape.cut > 0 && !shape.sealed && shape.head_end == 0)
      shape.head_end = job.log_limit;
    out = repvisor::read_log(fd.get(), shape, stamps, req);
  };
  if (log_limiter_ && log_limiter_->with_shape(job.id(), read)) return out;
  // Not tracked by the log thread: nothing cuts it, the job's record says what was cut.
  LogShape shape{.cut = job.log_bytes_cut};
  config::log_keep_from_string(job.log_keep, &shape.keep);
  if (shape.cut > 0 && shape.keep == LogKeep::Both) {
    const uint64_t block = sys::log_block_size(fd.get());
    const uint64_t b = block ? block : 4096;
    shape.marker_end = cfg_.logs.max_size / 2 - cfg_.logs.max_size / 2 % b + b;
  }
  shape.sealed = shape.cut > 0 && shape.keep == LogKeep::Head && core::is_terminal(job.state());
  read(shape);
  return out;
}

}  // namespace repvisor

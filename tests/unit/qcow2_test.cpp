// The qcow2 header reader: images made by qemu-img, read from their files, and headers built
// byte by byte for what qemu-img never writes — cut short, lengths that run off the end, names
// with NULs, features no implementation knows.
#include "sys/qcow2.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>

#include "sys/volume.hpp"
#include "temp_dir.hpp"

using namespace repvisor;
using namespace repvisor::sys;

namespace {

constexpr uint32_t kDataFileExt = 0x44415441;

// A header built field by field: the fixed fields of `version`, then what is appended.
class Header {
 public:
  explicit Header(uint32_t version = 3, uint32_t cluster_bits = 16) : b_(version == 2 ? 72 : 104, '\0') {
    b_.replace(0, 4, "QFI\xfb", 4);
    u32(4, version);
    u32(20, cluster_bits);
    if (version == 3) {
      u32(96, 4);  // refcount_order
      u32(100, 104);
    }
  }
  Header& u32(size_t at, uint32_t v) { return put(at, v, 4); }
  Header& u64(size_t at, uint64_t v) { return put(at, v, 8); }
  Header& incompatible(uint64_t bits) { return u64(72, bits); }
  // A header extension: type, length, data, padding to 8 bytes.
  Header& ext(uint32_t type, const std::string& data) { return ext(type, static_cast<uint32_t>(data.size()), data); }
  Header& ext(uint32_t type, uint32_t len, const std::string& data) {
    const size_t at = b_.size();
    b_.resize(at + 8);
    u32(at, type);
    u32(at + 4, len);
    b_ += data;
    b_.resize(b_.size() + (8 - data.size() % 8) % 8, '\0');
    return *this;
  }
  Header& end() { return ext(0, ""); }
  // The backing file name, stored here (after what is there so far) and pointed to.
  Header& backing(const std::string& name) {
    u64(8, b_.size());
    u32(16, static_cast<uint32_t>(name.size()));
    b_ += name;
    return *this;
  }
  Header& pad_to(size_t size) {
    b_.resize(size, '\0');
    return *this;
  }
  const std::string& bytes() const { return b_; }

 private:
  Header& put(size_t at, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i, v >>= 8) b_[at + static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
    return *this;
  }
  std::string b_;
};

std::string parse(const std::string& bytes, Qcow2Header* out) { return parse_qcow2(std::string_view(bytes), out); }

// The error for `bytes`, which must be refused.
std::string refusal(const std::string& bytes) {
  Qcow2Header h;
  std::string why = parse(bytes, &h);
  EXPECT_FALSE(why.empty()) << "accepted";
  return why;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string run(const std::string& cmd) {
  const std::string out_file = "/tmp/repvisor-qcow2-test-" + std::to_string(getpid()) + ".out";
  const int rc = system((cmd + " >" + out_file + " 2>&1").c_str());
  std::ifstream in(out_file);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  unlink(out_file.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

std::string first_bytes(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

}  // namespace

// What qemu-img writes, read through the descriptor as the daemon reads it.
TEST(Qcow2, ReadsTheImagesQemuImgMakes) {
  test::TempDir dir("qcow2");
  const std::string& d = dir.path();
  run("cd " + d + " && qemu-img create -q -f qcow2 plain.qcow2 1M");
  run("cd " + d + " && qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M");
  run("cd " + d + " && qemu-img create -q -f qcow2 -F qcow2 -b plain.qcow2 overlay.qcow2");
  run("cd " + d + " && qemu-img create -q -f qcow2 -o data_file=" + d + "/data.raw,data_file_raw=on data.qcow2 1M");
  run("cd " + d + " && qemu-img create -q -f qcow2 -o cluster_size=512,data_file=" + d + "/small.raw small.qcow2 1M");
  struct Case {
    std::string file;
    uint32_t version, cluster_bits;
    uint64_t incompatible;
    std::string backing, data;
  };
  const std::vector<Case> cases = {
      {"plain.qcow2", 3, 16, 0, "", ""},
      {"v2.qcow2", 2, 16, 0, "", ""},
      {"overlay.qcow2", 3, 16, 0, "plain.qcow2", ""},
      {"data.qcow2", 3, 16, kQcow2ExternalDataFile, "", d + "/data.raw"},
      {"small.qcow2", 3, 9, kQcow2ExternalDataFile, "", d + "/small.raw"},
  };
  for (const auto& c : cases) {
    const int fd = open((d + "/" + c.file).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << c.file;
    Qcow2Header h;
    EXPECT_EQ(read_qcow2_header(fd, &h), "") << c.file;
    close(fd);
    EXPECT_EQ(h.version, c.version) << c.file;
    EXPECT_EQ(h.cluster_bits, c.cluster_bits) << c.file;
    EXPECT_EQ(h.incompatible, c.incompatible) << c.file;
    EXPECT_EQ(h.backing_file, c.backing) << c.file;
    EXPECT_EQ(h.data_file, c.data) << c.file;
    // The beginning of the file says as much: the header, its extensions and names lie there.
    Qcow2Header from_bytes;
    EXPECT_EQ(parse(first_bytes(d + "/" + c.file, 4096), &from_bytes), "") << c.file;
    EXPECT_EQ(from_bytes.data_file, c.data) << c.file;
    EXPECT_EQ(from_bytes.backing_file, c.backing) << c.file;
  }
  // A raw file is no qcow2 image, whatever it was called.
  const int fd = open((d + "/data.raw").c_str(), O_RDONLY | O_CLOEXEC);
  Qcow2Header h;
  EXPECT_TRUE(has(read_qcow2_header(fd, &h), "not a qcow2 image"));
  close(fd);
}

TEST(Qcow2, ReadsVersion2Headers) {
  Qcow2Header h;
  // Extensions start right after the 72 bytes; a data file name means nothing without the
  // version 3 feature bit, as for qemu.
  EXPECT_EQ(parse(Header(2).ext(kDataFileExt, "/elsewhere/d.raw").end().backing("/v/base.img").bytes(), &h), "");
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.incompatible, 0u);
  EXPECT_EQ(h.backing_file, "/v/base.img");
  EXPECT_EQ(h.data_file, "");
  // Version 2 has no feature fields: whatever lies at 72 is an extension, not feature bits.
  EXPECT_EQ(parse(Header(2).end().pad_to(200).bytes(), &h), "");
  EXPECT_EQ(h.incompatible, 0u);
}

TEST(Qcow2, FindsTheDataFileAmongOtherExtensions) {
  Qcow2Header h;
  const std::string bytes = Header()
                                .incompatible(kQcow2ExternalDataFile | kQcow2Dirty | kQcow2ExtendedL2)
                                .ext(0xe2792aca, "raw")  // backing format: padded to 8
                                .ext(0x12345678, std::string(13, 'x'))
                                .ext(kDataFileExt, "/v/d.raw")
                                .end()
                                .backing("b.qcow2")
                                .bytes();
  EXPECT_EQ(parse(bytes, &h), "");
  EXPECT_EQ(h.data_file, "/v/d.raw");
  EXPECT_EQ(h.backing_file, "b.qcow2");
  EXPECT_EQ(h.incompatible, kQcow2ExternalDataFile | kQcow2Dirty | kQcow2ExtendedL2);
  // The extension area may end without an end marker where the backing file name begins.
  EXPECT_EQ(parse(Header().incompatible(kQcow2ExternalDataFile).ext(kDataFileExt, "/v/d.raw").backing("b").bytes(), &h),
            "");
  EXPECT_EQ(h.data_file, "/v/d.raw");
  // Every known incompatible feature is accepted.
  EXPECT_EQ(parse(Header().incompatible(kQcow2KnownIncompatible).ext(kDataFileExt, "/v/d.raw").end().bytes(), &h), "");
  EXPECT_EQ(h.incompatible, kQcow2KnownIncompatible);
}

TEST(Qcow2, RefusesWhatIsNotAQcow2Header) {
  EXPECT_TRUE(has(refusal(""), "not a qcow2 image"));
  EXPECT_TRUE(has(refusal("QFI"), "not a qcow2 image"));
  EXPECT_TRUE(has(refusal(std::string(512, '\0')), "not a qcow2 image"));
  EXPECT_TRUE(has(refusal(std::string("QFI\xfb\0\0\0\x03", 8)), "cut short: the file ends at offset 8"));
  EXPECT_TRUE(has(refusal(Header().u32(4, 1).bytes()), "qcow2 version 1 is not supported"));
  EXPECT_TRUE(has(refusal(Header().u32(4, 4).bytes()), "qcow2 version 4 is not supported"));
  EXPECT_TRUE(has(refusal(Header(3, 8).end().bytes()), "cluster_bits is 8"));
  EXPECT_TRUE(has(refusal(Header(3, 22).end().bytes()), "cluster_bits is 22"));
  EXPECT_TRUE(has(refusal(Header(3, 0xffffffff).end().bytes()), "cluster_bits is 4294967295"));
}

TEST(Qcow2, RefusesTruncatedHeaders) {
  // Version 3 fields missing.
  EXPECT_TRUE(has(refusal(Header().bytes().substr(0, 90)), "the file ends at offset 90, inside the version 3 header"));
  // The extension area ends before its end marker, or inside an extension.
  const std::string full = Header().ext(0x12345678, "abcdefgh").ext(kDataFileExt, "/v/d.raw").end().bytes();
  EXPECT_TRUE(has(refusal(full.substr(0, 104)), "the file ends at offset 104, inside a header extension"));
  EXPECT_TRUE(has(refusal(full.substr(0, 107)), "the file ends at offset 107, inside a header extension"));
  const std::string with_bit =
      Header().incompatible(kQcow2ExternalDataFile).ext(kDataFileExt, "/v/d.raw").end().bytes();
  EXPECT_TRUE(has(refusal(with_bit.substr(0, 115)), "the file ends at offset 115, inside the external data file name"));
  // The backing file name lies past the end of the file.
  EXPECT_TRUE(has(refusal(Header().end().u64(8, 4000).u32(16, 10).bytes()),
                  "the file ends at offset 4000, inside the backing file name"));
}

TEST(Qcow2, RefusesLengthsThatRunOffTheEnd) {
  // header_length
  EXPECT_TRUE(has(refusal(Header().u32(100, 96).end().bytes()), "header_length is 96, less than the 104"));
  EXPECT_TRUE(has(refusal(Header(3, 9).u32(100, 1024).end().bytes()), "header_length 1024 exceeds the cluster size"));
  // An extension longer than the space left in the first cluster, or in front of the backing name.
  EXPECT_TRUE(has(refusal(Header().ext(0x12345678, 0xffffffff, "").bytes()),
                  "header extension 0x12345678 at offset 104 (4294967295 bytes) runs past the end of the extension "
                  "area at offset 65536"));
  EXPECT_TRUE(has(refusal(Header(3, 9).ext(kDataFileExt, 512 - 104 - 8 + 1, "").bytes()), "runs past the end"));
  EXPECT_TRUE(has(refusal(Header().ext(kDataFileExt, "/v/d.raw").backing("b").u64(8, 110).bytes()),
                  "at offset 104 (8 bytes) runs past the end of the extension area at offset 110"));
  // An extension header that itself straddles the end of the area.
  EXPECT_TRUE(has(refusal(Header().ext(0x12345678, "").backing("b").u64(8, 108).bytes()), "runs past the end"));
  // The backing file name: where it starts, how long it is.
  EXPECT_TRUE(has(refusal(Header().end().u64(8, 65537).u32(16, 4).bytes()),
                  "backing_file_offset 65537 lies past the first cluster"));
  EXPECT_TRUE(has(refusal(Header().end().backing(std::string(1024, 'a')).bytes()),
                  "the backing file name at offset 112 is 1024 bytes long, more than the 1023 allowed"));
  EXPECT_TRUE(has(refusal(Header(3, 9).end().pad_to(500).backing(std::string(20, 'a')).bytes()),
                  "is 20 bytes long, more than the 12 allowed"));
  EXPECT_TRUE(has(refusal(Header()
                              .incompatible(kQcow2ExternalDataFile)
                              .ext(kDataFileExt, "/" + std::string(kQcow2DataFileNameMax, 'd'))
                              .end()
                              .bytes()),
                  "is 4096 bytes long, more than 4095"));
}

TEST(Qcow2, RefusesUnknownIncompatibleFeatures) {
  EXPECT_TRUE(has(refusal(Header().incompatible(uint64_t{1} << 5).end().bytes()), "incompatible feature bit 5 is set"));
  EXPECT_TRUE(has(refusal(Header().incompatible(kQcow2Dirty | (uint64_t{1} << 5) | (uint64_t{1} << 63)).end().bytes()),
                  "incompatible feature bits 5, 63 are set"));
}

TEST(Qcow2, RefusesDataFileNamesItCannotTrust) {
  const auto with_bit = [] { return Header().incompatible(kQcow2ExternalDataFile); };
  EXPECT_TRUE(has(refusal(with_bit().end().bytes()), "the external data file bit is set but no header extension"));
  // After the end marker nothing more is read, as in qemu.
  EXPECT_TRUE(has(refusal(with_bit().end().ext(kDataFileExt, "/v/d.raw").bytes()), "no header extension names"));
  EXPECT_TRUE(has(refusal(with_bit().ext(kDataFileExt, "").end().bytes()),
                  "the external data file name at offset 112 is empty"));
  EXPECT_TRUE(has(refusal(with_bit().ext(kDataFileExt, std::string("/v/ok\0/../../etc/x", 18)).end().bytes()),
                  "contains a NUL byte"));
  // qemu keeps the last of two names: the one checked could be the one not opened.
  EXPECT_TRUE(has(refusal(with_bit().ext(kDataFileExt, "/v/d.raw").ext(kDataFileExt, "/etc/shadow").end().bytes()),
                  "two external data file name extensions, at offsets 104 and 120"));
  EXPECT_TRUE(has(refusal(Header().end().backing(std::string("/v/b\0/x", 7)).bytes()),
                  "backing file name at offset 112 contains a NUL byte"));
}

TEST(Qcow2, ReportsReadErrorsAndReadsThroughShortReads) {
  const std::string bytes =
      Header().incompatible(kQcow2ExternalDataFile).ext(kDataFileExt, "/v/d.raw").end().backing("b.qcow2").bytes();
  Qcow2Header h;
  h.version = 77;
  const auto failing = [](uint64_t, void*, size_t) -> ssize_t { return -EIO; };
  EXPECT_TRUE(has(parse_qcow2(failing, &h), "reading the header at offset 0: Input/output error"));
  EXPECT_EQ(h.version, 77u) << "changed on an error";
  // A reader that returns a byte at a time reads the same header.
  const auto trickle = [&](uint64_t offset, void* buf, size_t len) -> ssize_t {
    if (offset >= bytes.size() || len == 0) return 0;
    *static_cast<char*>(buf) = bytes[offset];
    return 1;
  };
  EXPECT_EQ(parse_qcow2(trickle, &h), "");
  EXPECT_EQ(h.data_file, "/v/d.raw");
  EXPECT_EQ(h.backing_file, "b.qcow2");
  // One that claims more than it was asked for is not believed.
  const auto liar = [](uint64_t, void*, size_t len) -> ssize_t { return static_cast<ssize_t>(len + 1); };
  EXPECT_TRUE(has(parse_qcow2(liar, &h), "more bytes came back than were asked for"));
}

// repvisorctl's side of the D-Bus API: one connection, typed calls, and the mapping of
// D-Bus errors to plain sentences with a hint and a documented exit code.
#pragma once
#include <systemd/sd-bus.h>

#include <map>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "wire/client.hpp"
#include "wire/values.hpp"

namespace repvisor::ctl {

// Documented exit codes (repvisorctl(1), docs/cli.md).
enum Exit : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitNoSuchJob = 3,
  kExitJobActive = 4,
  kExitAccessDenied = 5,
  kExitUnreachable = 6,
  kExitInvalidArgs = 7,
  kExitNotResumable = 8,
  kExitCleanupFailed = 9,
  kExitJobFailed = 10,
  kExitJobCancelled = 11,
  kExitJobUnknown = 12,
};

struct CtlError : std::runtime_error {
  CtlError(int code, const std::string& msg, std::string hint = {})
      : std::runtime_error(msg), exit_code(code), hint(std::move(hint)) {}
  int exit_code;
  std::string hint;
};

// The API's values (wire/values.hpp) under the names the verbs use.
using StringMap = wire::StringMap;
// A list of flat dictionaries (aa{sv}): job resources, sent and read back.
using DictValue = wire::Scalar;
using Dict = wire::Record;
using DictList = wire::Records;
using Value = wire::Value;
using Props = wire::Dict;

// The properties with every string escaped (util/text.hpp): what a job's submitter chose (its
// name, notes, argv, status text) goes to a terminal as text, never as control sequences.
Props for_terminal(const Props& p);

std::string get_s(const Props& p, const std::string& k);
uint64_t get_t(const Props& p, const std::string& k);
int64_t get_i(const Props& p, const std::string& k);  // i or u
double get_d(const Props& p, const std::string& k);

// Options for Submit/Stop/Delete, written as a{sv}.
using Options = std::map<std::string, Value>;

struct EventRow {
  uint64_t ts_usec = 0;
  std::string job, type, message;
  Props details;
};

using JobRow = wire::JobRow;

class Client {
 public:
  explicit Client(const std::string& address);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  sd_bus* bus() const { return bus_.get(); }

  std::pair<std::string, std::string> submit(const Options& spec);
  std::vector<JobRow> list(const std::vector<std::string>& states = {});
  std::string get_job(const std::string& key);  // object path
  std::vector<EventRow> list_events(const std::string& job, uint64_t since_usec, uint64_t limit);
  Props job_properties(const std::string& path);
  Props manager_properties();
  // Starts a method call with an a{sv} argument (after `leading` string args); the reply comes to
  // `cb`. Used for the calls whose replies can take long (stop with wait, forced delete).
  wire::Slot call_async(const char* path, const char* interface, const char* method,
                        const std::vector<std::string>& leading, const Options& opts, sd_bus_message_handler_t cb,
                        void* userdata);
  // Job.Resume: the job's object path.
  std::string resume(const std::string& path);
  // Job.RetryCleanup: returns when the teardown has run (it may take minutes: no call timeout).
  void retry_cleanup(const std::string& path);
  Props call_dict(const char* path, const char* interface, const char* method, const std::vector<std::string>& leading,
                  const Options& opts);

  // Throws CtlError for a D-Bus error reply (with the daemon's message and our hint); the exit
  // code of each of the API's errors is chosen by its kind (wire/errors.hpp).
  [[noreturn]] static void raise(const sd_bus_error* e, const std::string& context = {});

 private:
  using Reply = wire::Message;
  // One call on `path`: `leading` string arguments, then `opts` as a{sv} when given; waits up to
  // `timeout` (0: sd-bus's default) and raises a D-Bus error as CtlError.
  Reply call(const char* path, const char* interface, const char* method, const Options* opts, uint64_t timeout = 0,
             const std::vector<std::string>& leading = {});
  // Throws the CtlError for an id prefix that matches more than one job, naming them.
  [[noreturn]] void ambiguous(const std::string& prefix);
  wire::Bus bus_;
};

// Reads a property dictionary (a{sv}) from m.
Props read_props(sd_bus_message* m);

}  // namespace repvisor::ctl

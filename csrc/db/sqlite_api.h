// The few SQLite C functions the native game writer calls, found at run time in the SQLite library
// that Python's own sqlite3 module has loaded (its _sqlite3 extension, opened with RTLD_NOLOAD:
// dlsym looks through that module's dependencies). Why not link SQLite into the extension: two
// copies of SQLite in one process do not see each other's POSIX locks on the same file, and
// closing one copy's connection drops the other's locks (SQLite's docs, "How To Corrupt Your
// Database Files", 2.2.1). Sharing Python's library keeps one lock table for the process, and the
// build needs no SQLite headers. Where the library cannot be found (an interpreter with SQLite
// linked statically and its symbols hidden), load() returns false and the caller writes through
// Python's sqlite3 instead. Host only.
#pragma once
#include <dlfcn.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

namespace rr {
namespace sqlite {

struct sqlite3;
struct sqlite3_stmt;

// Values from sqlite3.h (stable parts of SQLite's C interface).
constexpr int OK = 0;
constexpr int DONE = 101;
constexpr int OPEN_READWRITE = 0x00000002;
constexpr int OPEN_NOMUTEX = 0x00008000;  // this connection is used by one thread at a time
using Destructor = void (*)(void*);  // nullptr is SQLITE_STATIC: the caller keeps the bytes alive

struct Api {
  int (*open_v2)(const char*, sqlite3**, int, const char*) = nullptr;
  int (*close_v2)(sqlite3*) = nullptr;
  int (*exec)(sqlite3*, const char*, int (*)(void*, int, char**, char**), void*, char**) = nullptr;
  int (*busy_timeout)(sqlite3*, int) = nullptr;
  int (*prepare_v2)(sqlite3*, const char*, int, sqlite3_stmt**, const char**) = nullptr;
  int (*bind_int64)(sqlite3_stmt*, int, long long) = nullptr;
  int (*bind_text)(sqlite3_stmt*, int, const char*, int, Destructor) = nullptr;
  int (*bind_blob)(sqlite3_stmt*, int, const void*, int, Destructor) = nullptr;
  int (*bind_null)(sqlite3_stmt*, int) = nullptr;
  int (*step)(sqlite3_stmt*) = nullptr;
  int (*reset)(sqlite3_stmt*) = nullptr;
  int (*finalize)(sqlite3_stmt*) = nullptr;
  int (*changes)(sqlite3*) = nullptr;
  int (*get_autocommit)(sqlite3*) = nullptr;
  const char* (*errmsg)(sqlite3*) = nullptr;
  bool ready = false;
};

// Resolves the API once per process from the shared object at `module_path` (Python's _sqlite3
// extension; empty: the main program). Later calls return the first call's answer.
inline const Api* load(const std::string& module_path) {
  static Api api;
  static std::once_flag once;
  std::call_once(once, [&]() {
    void* lib = dlopen(module_path.empty() ? nullptr : module_path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return;  // not loaded in this process: nothing to share, so no native writer
    bool all = true;
    auto get = [&](auto& fn, const char* name) {
      void* p = dlsym(lib, name);
      if (!p) all = false;
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    get(api.open_v2, "sqlite3_open_v2");
    get(api.close_v2, "sqlite3_close_v2");
    get(api.exec, "sqlite3_exec");
    get(api.busy_timeout, "sqlite3_busy_timeout");
    get(api.prepare_v2, "sqlite3_prepare_v2");
    get(api.bind_int64, "sqlite3_bind_int64");
    get(api.bind_text, "sqlite3_bind_text");
    get(api.bind_blob, "sqlite3_bind_blob");
    get(api.bind_null, "sqlite3_bind_null");
    get(api.step, "sqlite3_step");
    get(api.reset, "sqlite3_reset");
    get(api.finalize, "sqlite3_finalize");
    get(api.changes, "sqlite3_changes");
    get(api.get_autocommit, "sqlite3_get_autocommit");
    get(api.errmsg, "sqlite3_errmsg");
    api.ready = all;
    // The handle stays open for the life of the process: the functions live in that library.
  });
  return api.ready ? &api : nullptr;
}

}  // namespace sqlite
}  // namespace rr

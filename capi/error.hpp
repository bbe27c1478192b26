// Status codes and the thread-local detail message. Inside the library a
// failed check throws nk::Error; every exported function runs its body in
// guarded(), so nothing throws across the C boundary.
#pragma once

#include <new>
#include <string>

#include "normkit.h"

namespace nk {

struct Error {
  nk_status status;
  std::string message;
};

[[noreturn]] void fail(nk_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void set_last_error(const char* where, const std::string& message);

template <class F>
nk_status guarded(const char* where, F&& body) noexcept {
  try {
    set_last_error(nullptr, "");
    body();
    return NK_OK;
  } catch (const Error& e) {
    set_last_error(where, e.message);
    return e.status;
  } catch (const std::bad_alloc&) {
    set_last_error(where, "out of memory for scratch buffers");
    return NK_ERR_OUT_OF_MEMORY;
  } catch (...) {
    set_last_error(where, "unexpected internal exception");
    return NK_ERR_INTERNAL;
  }
}

}  // namespace nk

#include "error.hpp"

#include <cstdarg>
#include <cstdio>

namespace nk {
namespace {
thread_local char g_message[512] = "";
}

void fail(nk_status status, const char* fmt, ...) {
  char buf[400];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Error{status, buf};
}

void set_last_error(const char* where, const std::string& message) {
  if (where == nullptr || message.empty())
    std::snprintf(g_message, sizeof g_message, "%s", message.c_str());
  else
    std::snprintf(g_message, sizeof g_message, "%s: %s", where, message.c_str());
}

}  // namespace nk

extern "C" {

NK_API const char* nk_last_error(void) { return nk::g_message; }

NK_API const char* nk_status_string(nk_status status) {
  switch (status) {
    case NK_OK: return "ok";
    case NK_ERR_NULL_POINTER: return "null pointer";
    case NK_ERR_BAD_SHAPE: return "bad shape";
    case NK_ERR_BAD_AXIS: return "bad axis";
    case NK_ERR_BAD_ARGUMENT: return "bad argument";
    case NK_ERR_OVERFLOW: return "size overflow";
    case NK_ERR_BAD_STRUCT_SIZE: return "bad option struct size";
    case NK_ERR_UNSUPPORTED: return "unsupported";
    case NK_ERR_OUT_OF_MEMORY: return "out of memory";
    case NK_ERR_BAD_ISA: return "bad ISA";
    case NK_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}
}

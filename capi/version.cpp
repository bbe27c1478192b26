#include "normkit.h"

#define NK_STR2(x) #x
#define NK_STR(x) NK_STR2(x)

extern "C" {
NK_API int32_t nk_version(void) { return NK_VERSION; }
NK_API int32_t nk_version_major(void) { return NK_VERSION_MAJOR; }
NK_API int32_t nk_version_minor(void) { return NK_VERSION_MINOR; }
NK_API int32_t nk_version_patch(void) { return NK_VERSION_PATCH; }
NK_API const char* nk_version_string(void) {
  return NK_STR(NK_VERSION_MAJOR) "." NK_STR(NK_VERSION_MINOR) "." NK_STR(NK_VERSION_PATCH);
}
}

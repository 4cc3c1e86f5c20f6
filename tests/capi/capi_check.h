/* Checks for the C API test programs: stop at the first failed call with its status and message. */
#ifndef QRT_TESTS_CAPI_CHECK_H
#define QRT_TESTS_CAPI_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "qrt/qrt.h"

/* A call that must succeed. */
#define CHECK_OK(call)                                                                          \
  do {                                                                                          \
    qrt_status status_ = (call);                                                                \
    if (status_ != QRT_OK) {                                                                    \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, qrt_status_name(status_), \
              qrt_last_error());                                                                \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

/* A condition that must hold. */
#define CHECK(condition, ...)                                      \
  do {                                                             \
    if (!(condition)) {                                            \
      fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #condition); \
      fprintf(stderr, __VA_ARGS__);                                \
      fprintf(stderr, "\n");                                       \
      exit(1);                                                     \
    }                                                              \
  } while (0)

/* Exit status that ctest reports as a skip (SKIP_RETURN_CODE). */
#define SKIP_EXIT_CODE 77

#endif

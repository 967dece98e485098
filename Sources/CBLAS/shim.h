#ifndef SWIFTDRAFT_CBLAS_SHIM_H
#define SWIFTDRAFT_CBLAS_SHIM_H
#include <cblas.h>
/* OpenBLAS' own thread-count controls (declared in its cblas.h on Debian). */
#endif

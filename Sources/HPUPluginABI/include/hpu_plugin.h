/* Placeholder: the HPU plugin ABI header lands with the HPU issue. */
#ifndef SWIFTDRAFT_HPU_PLUGIN_H
#define SWIFTDRAFT_HPU_PLUGIN_H
#include <stdint.h>
#endif

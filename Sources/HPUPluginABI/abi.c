#include "hpu_plugin.h"
